"""Listing rows: each listing the API offers answered by one partition query.

A rollout is listed in four partitions, newest first: every rollout (`created`), its
repository (`repo|<repository>`), its state (`state|<state>`), and both
(`repostate|<repository>|<state>`). Each row is a copy of the rollout entity under
another key, holding the document listings show as the writer rendered it (and
the record only when there is no such document), so a page is read straight
from the rows, with no point read and no rendering behind it.

Table Storage has no transaction across partitions, so a write leaves a marker that
names what it touched before anything else and deletes it last (a replace writes its
rows before the rollout, an insert after it): a write that dies in between leaves
its marker, and the repair (`repair_action` decides each row; run by the writer that
lost a race at once, by the timer's tick for a writer that died) puts the rows back
to what the rollout says. Every row carries the `Version` of the rollout it copies and the
`Intent` (a nonce) of the write that made it, which is what lets a repair tell a
dead writer's rows from those of a writer still in flight. docs/table-layout.md has
the whole argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from shared.adapters.table_keys import compose_key, descending_time

CREATED_PARTITION = "created"
MARKER_PARTITION = "relist"
_ROW_KIND = "listing"
# Properties of the rollout entity that belong to it alone, not to its copies.
_ROLLOUT_ONLY = frozenset({"PartitionKey", "RowKey", "Kind", "DueKey"})


def listing_partition(repository: str | None, state: str | None) -> str:
    """The partition that answers a listing of `repository` (any when None) in `state`."""
    if repository is None and state is None:
        return CREATED_PARTITION
    if state is None:
        assert repository is not None
        return compose_key("repo", repository)
    if repository is None:
        return compose_key("state", state)
    return compose_key("repostate", repository, state)


def listing_partitions(repository: str, state: str) -> tuple[str, ...]:
    """Every partition a rollout of `repository` in `state` is listed in."""
    return (
        CREATED_PARTITION,
        listing_partition(repository, None),
        listing_partition(None, state),
        listing_partition(repository, state),
    )


def listing_row_key(created_at: Any, rollout_id: str) -> str:
    """Newest first: the descending creation time, then the id (immutable, so a rollout's
    row keeps its key in every partition for ever)."""
    return compose_key(descending_time(created_at), rollout_id)


def _record_property(name: str) -> bool:
    return name in ("DocFormat", "DocChunks") or (name.startswith("Doc") and name[3:].isdigit())


def listing_rows(rollout_entity: dict[str, Any], row_key: str) -> dict[str, dict[str, Any]]:
    """The rows, by partition, that list the rollout stored as `rollout_entity`: its
    properties, without the record when the listed document is there (a page needs
    only that)."""
    rendered = "ListChunks" in rollout_entity
    copied = {
        k: v
        for k, v in rollout_entity.items()
        if k not in _ROLLOUT_ONLY and not (rendered and _record_property(k))
    }
    return {
        partition: {"PartitionKey": partition, "RowKey": row_key, "Kind": _ROW_KIND, **copied}
        for partition in listing_partitions(
            str(rollout_entity["Repository"]), str(rollout_entity["State"])
        )
    }


def is_copy(row: dict[str, Any]) -> bool:
    """Whether `row` carries the rollout (rows of earlier versions held only the id)."""
    return "DocFormat" in row or "ListChunks" in row


@dataclass(frozen=True, slots=True)
class Marker:
    """What one write touched: rows in `partitions` under `row_key`, tagged `intent`;
    `creates`: an insert, whose repair creates the rows it did not get to."""

    rollout_id: str
    intent: str
    row_key: str
    partitions: tuple[str, ...]
    creates: bool = False

    @property
    def key(self) -> str:
        return compose_key(self.rollout_id, self.intent)

    def entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": MARKER_PARTITION,
            "RowKey": self.key,
            "Kind": "relist",
            "Id": self.rollout_id,
            "Intent": self.intent,
            "ListingRow": self.row_key,
            "Partitions": json.dumps(list(self.partitions)),
            "Creates": self.creates,
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Marker:
        return cls(
            rollout_id=str(entity["Id"]),
            intent=str(entity["Intent"]),
            row_key=str(entity["ListingRow"]),
            partitions=tuple(json.loads(str(entity["Partitions"]))),
            creates=bool(entity.get("Creates", False)),
        )


Action = Literal["keep", "delete", "rewrite"]


def version_of(entity: dict[str, Any] | None) -> int:
    """The write count an entity records (0 for entities of earlier versions)."""
    return int(entity.get("Version", 0)) if entity is not None else 0


def repair_action(
    partition: str, row: dict[str, Any], *, intent: str, truth: dict[str, Any] | None
) -> Action:
    """What a repair for the write `intent` does to `row` in `partition`, the rollout
    being `truth` (its entity, None when it does not exist).

    A row is touched only when it is the dead write's own, or a copy of a version the
    rollout has already passed; a row of a newer version belongs to a writer still in
    flight, whose own marker answers for it."""
    if row.get("Intent") != intent and version_of(row) > version_of(truth):
        return "keep"
    if truth is None:
        return "delete"
    if partition not in listing_partitions(str(truth["Repository"]), str(truth["State"])):
        return "delete"
    if (
        is_copy(row)
        and row.get("Intent") == truth.get("Intent")
        and version_of(row) == version_of(truth)
    ):
        return "keep"
    return "rewrite"
