"""The listing-row repair rule: which rows a repair of a dead write may touch."""

from __future__ import annotations

from typing import Any

from shared.adapters.table_listing import (
    CREATED_PARTITION,
    listing_partition,
    listing_partitions,
    repair_action,
)


def entity(state: str, version: int, intent: str, **more: Any) -> dict[str, Any]:
    return {
        "Repository": "models/llm",
        "State": state,
        "Version": version,
        "Intent": intent,
        "DocFormat": "json+zlib",
        **more,
    }


FAILED = listing_partition(None, "failed")
DEPLOYING = listing_partition(None, "deploying")


def test_the_partitions_of_each_listing_are_distinct() -> None:
    assert listing_partition(None, None) == CREATED_PARTITION
    assert len(set(listing_partitions("models/llm", "live"))) == 4
    # A repository named like a state partition cannot collide with it.
    assert listing_partition("state", None) != listing_partition(None, "state")
    assert listing_partition("a|b", "c") != listing_partition("a", "b|c")


def test_a_dead_writes_rows_are_deleted_or_rewritten_to_the_rollout() -> None:
    truth = entity("deploying", 1, "landed")
    assert (
        repair_action(FAILED, entity("failed", 2, "dead"), intent="dead", truth=truth) == "delete"
    )
    assert (
        repair_action(CREATED_PARTITION, entity("failed", 2, "dead"), intent="dead", truth=truth)
        == "rewrite"
    )
    assert (
        repair_action(DEPLOYING, entity("deploying", 1, "landed"), intent="dead", truth=truth)
        == "keep"
    )
    assert repair_action(FAILED, entity("failed", 1, "dead"), intent="dead", truth=None) == "delete"


def test_rows_of_a_write_still_in_flight_are_kept() -> None:
    """Version above the rollout's and another intent: a writer between its rows and its
    rollout. Its own marker answers for them."""
    truth = entity("deploying", 1, "landed")
    in_flight = entity("live", 2, "other")
    assert repair_action(CREATED_PARTITION, in_flight, intent="dead", truth=truth) == "keep"
    assert (
        repair_action(listing_partition(None, "live"), in_flight, intent="dead", truth=truth)
        == "keep"
    )


def test_a_row_the_rollout_has_passed_is_brought_up_to_it() -> None:
    truth = entity("live", 3, "latest")
    left_behind = entity("deploying", 2, "earlier")
    assert repair_action(DEPLOYING, left_behind, intent="dead", truth=truth) == "delete"
    assert repair_action(CREATED_PARTITION, left_behind, intent="dead", truth=truth) == "rewrite"
    # A row of an earlier release holds only the id: rewritten as a copy.
    id_only = {"Id": "r1"}
    assert repair_action(CREATED_PARTITION, id_only, intent="dead", truth=truth) == "rewrite"
