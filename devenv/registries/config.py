"""The registries supervisor's settings (one JSON file) and each region's generated Distribution config.

The supervisor reads only its JSON file, so `python -m devenv.registries --config <json>`
needs nothing else; `supervisor_settings` derives it from a `LocalEnv`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from devenv.config import LOCAL_REGISTRY_RESOURCE_ID, LOCAL_TOPIC_KEY, LocalEnv
from devenv.ports import LOOPBACK
from devenv.tls import TlsFiles

EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
EVENT_SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)

# Distribution reports blob uploads and blob reads with this media type; nobody
# downstream wants them, and each one would queue behind a slow endpoint.
BLOB_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class RegionSettings:
    """One region's registry and its replication knobs."""

    name: str
    port: int
    primary: bool
    extra_delay_s: float = 0.0
    unavailable: bool = False
    never_replicates: bool = False

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"


@dataclass(frozen=True)
class SupervisorSettings:
    """Everything `python -m devenv.registries` needs; serialised as one JSON file."""

    regions: tuple[RegionSettings, ...]
    state_dir: Path  # registries' data, generated configs, spools
    log_dir: Path
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    relay_port: int
    function_app_url: str
    eventgrid_topic_endpoint: str | None = None
    event_schema: str = EVENT_GRID_SCHEMA
    topic_key: str = LOCAL_TOPIC_KEY
    registry_resource_id: str = LOCAL_REGISTRY_RESOURCE_ID
    replication_base_s: float = 2.0
    replication_bandwidth_bytes_per_s: float = 20_000_000.0
    # Distribution's per-endpoint delivery knobs: short, so a missing endpoint costs little.
    notification_timeout: str = "3s"
    notification_backoff: str = "1s"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event_schema not in EVENT_SCHEMAS:
            raise ValueError(
                f"event_schema must be one of {EVENT_SCHEMAS}, not {self.event_schema!r}"
            )
        if not self.regions:
            raise ValueError("at least one region is required")

    @property
    def primary(self) -> RegionSettings:
        return self.regions[0]

    @property
    def relay_url(self) -> str:
        return f"http://{LOOPBACK}:{self.relay_port}"

    def region(self, name: str) -> RegionSettings:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SupervisorSettings:
        raw: dict[str, Any] = json.loads(text)
        raw["regions"] = tuple(RegionSettings(**r) for r in raw["regions"])
        for key in ("state_dir", "log_dir", "ca_pem", "cert_pem", "key_pem"):
            raw[key] = Path(raw[key])
        return cls(**raw)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def supervisor_settings(
    env: LocalEnv,
    tls: TlsFiles,
    *,
    eventgrid_topic_endpoint: str | None,
    event_schema: str = EVENT_GRID_SCHEMA,
) -> SupervisorSettings:
    """The supervisor's settings for `env`: its regions, ports, knobs and TLS files."""
    regions = tuple(
        RegionSettings(
            name=r.name,
            port=r.registry_port,
            primary=r.primary,
            extra_delay_s=r.extra_delay_s,
            unavailable=r.unavailable,
            never_replicates=r.never_replicates,
        )
        for r in env.regions
    )
    return SupervisorSettings(
        regions=regions,
        state_dir=env.state_dir / "registries",
        log_dir=env.state_dir / "logs",
        ca_pem=tls.ca_pem,
        cert_pem=tls.cert_pem,
        key_pem=tls.key_pem,
        relay_port=env.relay_port,
        function_app_url=env.host_url,
        eventgrid_topic_endpoint=eventgrid_topic_endpoint,
        event_schema=event_schema,
        replication_base_s=env.replication_base_s,
        replication_bandwidth_bytes_per_s=env.replication_bandwidth_bytes_per_s,
    )


def with_region_knobs(settings: SupervisorSettings, name: str, **knobs: Any) -> SupervisorSettings:
    regions = tuple(replace(r, **knobs) if r.name == name else r for r in settings.regions)
    return replace(settings, regions=regions)


def _endpoint(name: str, url: str, settings: SupervisorSettings) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        # No `headers`: Distribution already sends its own Content-Type, and a second
        # one makes aiohttp answer 400, which Distribution would then retry forever.
        "timeout": settings.notification_timeout,
        "threshold": 3,
        "backoff": settings.notification_backoff,
        "ignoredmediatypes": [BLOB_MEDIA_TYPE],
        # Understood by Distribution 2.7+ (checked against 2.8.2 by the integration tests).
        "ignore": {"mediatypes": [BLOB_MEDIA_TYPE], "actions": ["pull"]},
    }


def registry_config(region: RegionSettings, settings: SupervisorSettings) -> dict[str, Any]:
    """The Distribution configuration for one region (JSON, which Distribution reads as YAML)."""
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.state_dir / region.name)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"{LOOPBACK}:{region.port}",
            # Without it the SDK's blob upload gets a 301 (absolute Location URLs).
            "relativeurls": True,
            "secret": secrets.token_hex(16),
            "tls": {"certificate": str(settings.cert_pem), "key": str(settings.key_pem)},
        },
        "notifications": {
            "events": {"includereferences": True},
            "endpoints": [
                _endpoint(
                    "functionapp",
                    f"{settings.function_app_url}/api/hooks/acr?region={region.name}",
                    settings,
                ),
                _endpoint("relay", f"{settings.relay_url}/notifications/{region.name}", settings),
            ],
        },
    }


def write_registry_config(region: RegionSettings, settings: SupervisorSettings) -> Path:
    path = settings.state_dir / "config" / f"{region.name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / region.name).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registry_config(region, settings), indent=2))
    return path
