"""The live set of event subscriptions per topic, with their validation state, persisted across restarts.

Subscriptions come from the config file (the launcher's) and from the management API;
both end up in `subscriptions.json` under the state directory. On start-up the config's
subscriptions are laid over what was saved, so a changed endpoint is validated again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from devenv.eventgrid.config import SubscriptionSpec, TopicSpec, write_json_atomically


class ProvisioningState(StrEnum):
    """Azure's provisioningState values an event subscription moves through here."""

    CREATING = "Creating"  # the validation handshake has not succeeded yet
    SUCCEEDED = "Succeeded"  # validated: events are delivered
    FAILED = "Failed"  # the handshake failed; retried in the background


class Origin(StrEnum):
    CONFIG = "config"
    API = "api"


@dataclass(frozen=True)
class SubscriptionRecord:
    topic: str
    spec: SubscriptionSpec
    state: ProvisioningState = ProvisioningState.CREATING
    last_validation_error: str | None = None
    origin: Origin = Origin.API

    @property
    def active(self) -> bool:
        return self.state is ProvisioningState.SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        return {
            **self.spec.to_json(),
            "topic": self.topic,
            "provisioningState": self.state.value,
            "lastValidationError": self.last_validation_error,
            "origin": self.origin.value,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SubscriptionRecord:
        return cls(
            topic=raw["topic"],
            spec=SubscriptionSpec.from_json(raw["name"], raw),
            state=ProvisioningState(raw["provisioningState"]),
            last_validation_error=raw.get("lastValidationError"),
            origin=Origin(raw.get("origin", Origin.API.value)),
        )


class SubscriptionRegistry:
    """Subscriptions keyed by (topic, name), both case-insensitive as in Azure; every change is saved."""

    def __init__(self, state_file: Path) -> None:
        self._state_file = state_file
        self._records: dict[tuple[str, str], SubscriptionRecord] = {}

    @classmethod
    def load(cls, state_file: Path, topics: Iterable[TopicSpec]) -> SubscriptionRegistry:
        registry = cls(state_file)
        topics = list(topics)
        known_topics = {t.name.lower(): t.name for t in topics}
        configured = {
            (t.name.lower(), s.name.lower()): (t.name, s) for t in topics for s in t.subscriptions
        }
        if state_file.exists():
            for raw in json.loads(state_file.read_text()).get("subscriptions", []):
                record = SubscriptionRecord.from_json(raw)
                key = _key(record.topic, record.spec.name)
                if key[0] not in known_topics:
                    continue
                # A config subscription the config no longer names was removed on purpose.
                if record.origin is Origin.CONFIG and key not in configured:
                    continue
                registry._records[key] = record
        for key, (topic_name, spec) in configured.items():
            saved = registry._records.get(key)
            if saved is None or saved.spec != spec:
                registry._records[key] = SubscriptionRecord(
                    topic=topic_name, spec=spec, origin=Origin.CONFIG
                )
            else:
                registry._records[key] = replace(saved, origin=Origin.CONFIG)
        registry.save()
        return registry

    def get(self, topic: str, name: str) -> SubscriptionRecord | None:
        return self._records.get(_key(topic, name))

    def for_topic(self, topic: str) -> list[SubscriptionRecord]:
        return sorted(
            (r for r in self._records.values() if r.topic.lower() == topic.lower()),
            key=lambda r: r.spec.name.lower(),
        )

    def all(self) -> list[SubscriptionRecord]:
        return list(self._records.values())

    def put(self, topic: str, spec: SubscriptionSpec) -> tuple[SubscriptionRecord, bool]:
        """Create or replace a subscription; a changed one must pass validation again. Returns (record, created)."""
        key = _key(topic, spec.name)
        existing = self._records.get(key)
        if existing is not None and existing.spec == spec:
            return existing, False
        record = SubscriptionRecord(topic=topic, spec=spec, origin=Origin.API)
        self._records[key] = record
        self.save()
        return record, existing is None

    def set_state(
        self, topic: str, name: str, state: ProvisioningState, error: str | None = None
    ) -> SubscriptionRecord | None:
        key = _key(topic, name)
        record = self._records.get(key)
        if record is None:
            return None
        record = replace(record, state=state, last_validation_error=error)
        self._records[key] = record
        self.save()
        return record

    def delete(self, topic: str, name: str) -> bool:
        removed = self._records.pop(_key(topic, name), None)
        self.save()
        return removed is not None

    def save(self) -> None:
        records = sorted(self._records.values(), key=lambda r: _key(r.topic, r.spec.name))
        write_json_atomically(self._state_file, {"subscriptions": [r.to_json() for r in records]})


def _key(topic: str, name: str) -> tuple[str, str]:
    return topic.lower(), name.lower()
