"""The shape of one local environment: regions, ports, knobs. One value shared by every stand-in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from devenv import ports
from devenv.paths import STATE_DIR

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
LOCAL_RESOURCE_GROUP = "georollout-local"
LOCAL_REGISTRY_NAME = "georollout"
LOCAL_REGISTRY_RESOURCE_ID = (
    f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}"
    f"/providers/Microsoft.ContainerRegistry/registries/{LOCAL_REGISTRY_NAME}"
)
# The topic key the Event Grid emulator expects; a local, loopback-only value, not a secret.
LOCAL_TOPIC_KEY = "local-topic-key"


@dataclass(frozen=True)
class RegionEnv:
    """One region: its registry replica and its Foundry workspace."""

    name: str
    index: int  # 1-based; region 1 is the primary
    registry_port: int
    extra_delay_s: float = 0.0
    unavailable: bool = False
    never_replicates: bool = False

    @property
    def primary(self) -> bool:
        return self.index == 1

    @property
    def registry_url(self) -> str:
        return f"https://{ports.LOOPBACK}:{self.registry_port}"

    @property
    def registry_host(self) -> str:
        return f"{ports.LOOPBACK}:{self.registry_port}"

    @property
    def workspace_name(self) -> str:
        return f"ws-{self.name}"

    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


@dataclass(frozen=True)
class LocalEnv:
    """Everything the local environment's launchers need to agree on."""

    regions: tuple[RegionEnv, ...]
    state_dir: Path = STATE_DIR
    host_port: int = ports.FUNCTIONS_HOST_PORT
    azurite_port: int = ports.AZURITE_TABLE_PORT
    arm_port: int = ports.ARM_PORT
    eventgrid_port: int = ports.EVENTGRID_PORT
    relay_port: int = ports.REGISTRY_RELAY_PORT
    # Replication delay = base + bytes / bandwidth (+ the region's extra delay).
    replication_base_s: float = 2.0
    replication_bandwidth_bytes_per_s: float = 20_000_000.0
    # Longer than the local probe interval, so code that waits on an LRO shows.
    arm_provisioning_s: float = 8.0
    eventgrid_chaos: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def primary(self) -> RegionEnv:
        return self.regions[0]

    def region(self, name: str) -> RegionEnv:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    @property
    def host_url(self) -> str:
        return f"http://{ports.LOOPBACK}:{self.host_port}"

    @property
    def arm_url(self) -> str:
        return f"https://{ports.LOOPBACK}:{self.arm_port}"

    @property
    def eventgrid_url(self) -> str:
        return f"https://{ports.LOOPBACK}:{self.eventgrid_port}"

    @property
    def relay_url(self) -> str:
        return f"http://{ports.LOOPBACK}:{self.relay_port}"

    @property
    def table_connection_string(self) -> str:
        # Azurite's published development account; documented, not a secret.
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
            "K1SZFPTOtr/KBHBeksoGMGw==;"
            f"TableEndpoint=http://{ports.LOOPBACK}:{self.azurite_port}/devstoreaccount1;"
        )

    def with_region(self, name: str, **changes: object) -> LocalEnv:
        regions = tuple(replace(r, **changes) if r.name == name else r for r in self.regions)  # type: ignore[arg-type]
        return replace(self, regions=regions)


def default_env(region_names: tuple[str, ...] = ports.DEFAULT_REGIONS) -> LocalEnv:
    """The environment `make up` starts: the contract's default ports."""
    regions = tuple(
        RegionEnv(name=name, index=i, registry_port=ports.REGISTRY_BASE_PORT + i)
        for i, name in enumerate(region_names, start=1)
    )
    return LocalEnv(regions=regions)


def isolated_env(
    state_dir: Path, region_names: tuple[str, ...] = ports.DEFAULT_REGIONS
) -> LocalEnv:
    """An environment on free ports under `state_dir`, so tests never clash with `make up`."""
    chosen = ports.free_ports(5 + len(region_names))
    regions = tuple(
        RegionEnv(name=name, index=i, registry_port=chosen[4 + i])
        for i, name in enumerate(region_names, start=1)
    )
    return LocalEnv(
        regions=regions,
        state_dir=state_dir,
        host_port=chosen[0],
        azurite_port=chosen[1],
        arm_port=chosen[2],
        eventgrid_port=chosen[3],
        relay_port=chosen[4],
    )
