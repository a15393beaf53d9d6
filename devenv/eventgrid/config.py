"""The emulator's configuration: topics, their subscriptions and the delivery knobs, as typed values.

The same JSON shape is written by the launcher, read by `python -m devenv.eventgrid`,
and (for one subscription) accepted by the management API, so it is parsed in one place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from devenv.config import LOCAL_RESOURCE_GROUP, LOCAL_SUBSCRIPTION, LOCAL_TOPIC_KEY

# Azure's rules: topic names 3-50, subscription names 3-64 characters of letters, digits, hyphens.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9-]{3,50}$")
SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")
MAX_DELIVERY_ATTEMPTS_LIMIT = 30
EVENT_TTL_MINUTES_LIMIT = 1440


class ConfigError(ValueError):
    """A configuration value Azure would refuse; the message names the field."""


class InputSchema(StrEnum):
    EVENT_GRID = "EventGridSchema"
    CLOUD_EVENTS = "CloudEventSchemaV1_0"


@dataclass(frozen=True)
class SubscriptionSpec:
    """One event subscription with a webhook destination (the subset of Azure's settings georollout uses)."""

    name: str
    endpoint: str
    included_event_types: tuple[str, ...] | None = None
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    is_subject_case_sensitive: bool = False
    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS_LIMIT
    event_time_to_live_minutes: int = EVENT_TTL_MINUTES_LIMIT

    def __post_init__(self) -> None:
        if not SUBSCRIPTION_NAME.match(self.name):
            raise ConfigError(
                f"subscription name {self.name!r} must be 3-64 letters, digits or hyphens"
            )
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint {self.endpoint!r} must be an http(s) URL")
        if not 1 <= self.max_delivery_attempts <= MAX_DELIVERY_ATTEMPTS_LIMIT:
            raise ConfigError(
                f"retryPolicy.maxDeliveryAttempts must be 1-{MAX_DELIVERY_ATTEMPTS_LIMIT}, "
                f"got {self.max_delivery_attempts}"
            )
        if not 1 <= self.event_time_to_live_minutes <= EVENT_TTL_MINUTES_LIMIT:
            raise ConfigError(
                f"retryPolicy.eventTimeToLiveInMinutes must be 1-{EVENT_TTL_MINUTES_LIMIT}, "
                f"got {self.event_time_to_live_minutes}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "filter": {
                "includedEventTypes": (
                    None if self.included_event_types is None else list(self.included_event_types)
                ),
                "subjectBeginsWith": self.subject_begins_with,
                "subjectEndsWith": self.subject_ends_with,
                "isSubjectCaseSensitive": self.is_subject_case_sensitive,
            },
            "retryPolicy": {
                "maxDeliveryAttempts": self.max_delivery_attempts,
                "eventTimeToLiveInMinutes": self.event_time_to_live_minutes,
            },
        }

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> SubscriptionSpec:
        if not isinstance(raw, Mapping):
            raise ConfigError("a subscription must be a JSON object")
        endpoint = _field(raw, "endpoint", str)
        filters = _field(raw, "filter", Mapping, default={})
        retry = _field(raw, "retryPolicy", Mapping, default={})
        types = _field(filters, "includedEventTypes", list, default=None, path="filter.")
        if types is not None and not all(isinstance(t, str) and t for t in types):
            raise ConfigError("filter.includedEventTypes must be a list of non-empty strings")
        return cls(
            name=name,
            endpoint=endpoint,
            included_event_types=None if types is None else tuple(types),
            subject_begins_with=_field(
                filters, "subjectBeginsWith", str, default="", path="filter."
            ),
            subject_ends_with=_field(filters, "subjectEndsWith", str, default="", path="filter."),
            is_subject_case_sensitive=_field(
                filters, "isSubjectCaseSensitive", bool, default=False, path="filter."
            ),
            max_delivery_attempts=_field(
                retry,
                "maxDeliveryAttempts",
                int,
                default=MAX_DELIVERY_ATTEMPTS_LIMIT,
                path="retryPolicy.",
            ),
            event_time_to_live_minutes=_field(
                retry,
                "eventTimeToLiveInMinutes",
                int,
                default=EVENT_TTL_MINUTES_LIMIT,
                path="retryPolicy.",
            ),
        )


@dataclass(frozen=True)
class TopicSpec:
    """One custom topic: its input schema (also every subscription's delivery schema) and access key."""

    name: str
    input_schema: InputSchema = InputSchema.CLOUD_EVENTS
    key: str = LOCAL_TOPIC_KEY
    subscriptions: tuple[SubscriptionSpec, ...] = ()

    def __post_init__(self) -> None:
        if not TOPIC_NAME.match(self.name):
            raise ConfigError(f"topic name {self.name!r} must be 3-50 letters, digits or hyphens")
        names = [s.name.lower() for s in self.subscriptions]
        if len(names) != len(set(names)):
            raise ConfigError(f"topic {self.name!r} names a subscription twice")

    @property
    def resource_id(self) -> str:
        """The ARM id Event Grid stamps into `topic` of the events it delivers."""
        return (
            f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/{LOCAL_RESOURCE_GROUP}"
            f"/providers/Microsoft.EventGrid/topics/{self.name}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputSchema": self.input_schema.value,
            "key": self.key,
            "subscriptions": [s.to_json() for s in self.subscriptions],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TopicSpec:
        schema = _field(raw, "inputSchema", str, default=InputSchema.CLOUD_EVENTS.value)
        try:
            input_schema = InputSchema(schema)
        except ValueError:
            allowed = ", ".join(s.value for s in InputSchema)
            raise ConfigError(f"inputSchema must be one of {allowed}, got {schema!r}") from None
        subscriptions = tuple(
            SubscriptionSpec.from_json(_field(s, "name", str), s)
            for s in _field(raw, "subscriptions", list, default=[])
        )
        return cls(
            name=_field(raw, "name", str),
            input_schema=input_schema,
            key=_field(raw, "key", str, default=LOCAL_TOPIC_KEY),
            subscriptions=subscriptions,
        )


@dataclass(frozen=True)
class DeliverySettings:
    """Retry timing. Azure's schedule is minutes to hours; locally it is seconds, and tests shrink it further."""

    retry_base_s: float = 1.0  # first retry after about this long, doubling each time
    retry_max_s: float = 60.0
    retry_jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    timeout_s: float = 30.0  # Azure waits 30 s for a webhook to answer
    validation_retry_s: float = 10.0  # how often a failed validation handshake is tried again

    def to_json(self) -> dict[str, Any]:
        return {
            "retryBaseSeconds": self.retry_base_s,
            "retryMaxSeconds": self.retry_max_s,
            "retryJitter": self.retry_jitter,
            "timeoutSeconds": self.timeout_s,
            "validationRetrySeconds": self.validation_retry_s,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeliverySettings:
        default = cls()
        return cls(
            retry_base_s=float(raw.get("retryBaseSeconds", default.retry_base_s)),
            retry_max_s=float(raw.get("retryMaxSeconds", default.retry_max_s)),
            retry_jitter=float(raw.get("retryJitter", default.retry_jitter)),
            timeout_s=float(raw.get("timeoutSeconds", default.timeout_s)),
            validation_retry_s=float(raw.get("validationRetrySeconds", default.validation_retry_s)),
        )


@dataclass(frozen=True)
class ChaosSettings:
    """Deliberate duplicates and reordering, decided by a seeded generator so a run can be replayed."""

    enabled: bool = False
    seed: int = 0
    duplicate_probability: float = 0.3
    delay_probability: float = 0.3
    max_delay_s: float = 0.5

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "seed": self.seed,
            "duplicateProbability": self.duplicate_probability,
            "delayProbability": self.delay_probability,
            "maxDelaySeconds": self.max_delay_s,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChaosSettings:
        default = cls()
        return cls(
            enabled=bool(raw.get("enabled", default.enabled)),
            seed=int(raw.get("seed", default.seed)),
            duplicate_probability=float(
                raw.get("duplicateProbability", default.duplicate_probability)
            ),
            delay_probability=float(raw.get("delayProbability", default.delay_probability)),
            max_delay_s=float(raw.get("maxDelaySeconds", default.max_delay_s)),
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything one emulator process needs."""

    port: int
    state_dir: Path  # holds subscriptions.json, spool/ and deadletter/
    cert_pem: Path
    key_pem: Path
    ca_pem: Path  # trusted when delivering to https webhooks
    topics: tuple[TopicSpec, ...] = ()
    host: str = "127.0.0.1"
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    chaos: ChaosSettings = field(default_factory=ChaosSettings)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "stateDir": str(self.state_dir),
            "tls": {"cert": str(self.cert_pem), "key": str(self.key_pem), "ca": str(self.ca_pem)},
            "delivery": self.delivery.to_json(),
            "chaos": self.chaos.to_json(),
            "topics": [t.to_json() for t in self.topics],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EmulatorConfig:
        tls = _field(raw, "tls", Mapping)
        topics = tuple(TopicSpec.from_json(t) for t in _field(raw, "topics", list, default=[]))
        names = [t.name.lower() for t in topics]
        if len(names) != len(set(names)):
            raise ConfigError("a topic name appears twice")
        return cls(
            host=_field(raw, "host", str, default="127.0.0.1"),
            port=_field(raw, "port", int),
            state_dir=Path(_field(raw, "stateDir", str)),
            cert_pem=Path(_field(tls, "cert", str, path="tls.")),
            key_pem=Path(_field(tls, "key", str, path="tls.")),
            ca_pem=Path(_field(tls, "ca", str, path="tls.")),
            topics=topics,
            delivery=DeliverySettings.from_json(_field(raw, "delivery", Mapping, default={})),
            chaos=ChaosSettings.from_json(_field(raw, "chaos", Mapping, default={})),
        )

    def save(self, path: Path) -> None:
        write_json_atomically(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> EmulatorConfig:
        return cls.from_json(json.loads(path.read_text()))


def write_json_atomically(path: Path, value: Any) -> None:
    """Write `value` so a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2))
    os.replace(temporary, path)


_MISSING = object()


def _field(
    raw: Mapping[str, Any],
    name: str,
    kind: type[Any] | tuple[type[Any], ...],
    *,
    default: Any = _MISSING,
    path: str = "",
) -> Any:
    value = raw.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise ConfigError(f"{path}{name} is required")
        return default
    # bool is an int in Python; a JSON true is never a valid count.
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{path}{name} must be an integer")
    if not isinstance(value, kind):
        expected = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{path}{name} must be of type {expected}, got {type(value).__name__}")
    return value


def topic_by_name(topics: Sequence[TopicSpec], name: str) -> TopicSpec | None:
    """Topic names are case-insensitive in Azure."""
    for topic in topics:
        if topic.name.lower() == name.lower():
            return topic
    return None
