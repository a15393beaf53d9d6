"""Reading a rollout document as `wait` does: has it ended, and how, and what changed since the
last look. Pure: documents in, verdicts and event lines out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LIVE = "live"
# Rollout states `wait` gives up on (the contract's "failed / rolled back / superseded /
# timed out / ignored"); any other state still moves or waits for an operator.
ENDED_STATES = frozenset({"failed", "rolled_back", "superseded", "timed_out", "ignored"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a rollout ended: `live` true only when it is live in every region."""

    live: bool
    state: str
    reason: str


def verdict(document: Mapping[str, Any]) -> Verdict | None:
    """The verdict once the rollout has ended, None while it is still under way."""
    state = str(document.get("state"))
    if state == LIVE:
        return Verdict(True, state, "live in every region")
    if state not in ENDED_STATES:
        return None
    return Verdict(False, state, ended_reason(document))


def ended_reason(document: Mapping[str, Any]) -> str:
    """Why a rollout ended without going live, from the fields that say it."""
    reasons: list[str] = []
    if document.get("ignored_reason"):
        reasons.append(f"ignored: {_text(document['ignored_reason'])}")
    if document.get("superseded_by"):
        reasons.append(f"superseded by {document['superseded_by']}")
    if rollback_reason := _text(document.get("rollback_reason")):
        reasons.append(rollback_reason)
    for region in _regions(document):
        if region.get("last_error"):
            reasons.append(
                f"{region.get('region')} ({region.get('state')}): {_text(region['last_error'])}"
            )
        elif region.get("state") in ENDED_STATES:
            reasons.append(f"{region.get('region')}: {region.get('state')}")
    if document.get("step_error"):
        reasons.append(f"last step error: {_text(document['step_error'])}")
    return "; ".join(reasons) or str(document.get("state"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What progress lines are about: the rollout's state and each region's line (a change
    that would print the same line again, e.g. a live region's clean-up step, is none)."""

    state: str
    regions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Snapshot:
        return cls(
            state=str(document.get("state")),
            regions=tuple(
                (str(region.get("region")), region_line(region)) for region in _regions(document)
            ),
        )


def changes(previous: Snapshot | None, current: Snapshot) -> list[str]:
    """One line per thing that changed since `previous` (everything on the first look)."""
    lines: list[str] = []
    if previous is None or previous.state != current.state:
        before = f"{previous.state} -> " if previous is not None else ""
        lines.append(f"rollout {before}{current.state}")
    seen = dict(previous.regions) if previous is not None else {}
    lines += [line for name, line in current.regions if seen.get(name) != line]
    return lines


def region_line(region: Mapping[str, Any]) -> str:
    """`westus: deploying (step creating); waiting for: ...; error: ...`."""
    state = _text(region.get("state"))
    text = f"{_text(region.get('region'))}: {state}"
    step = _text(region.get("deploy_step"))
    if step and state == "deploying":
        text += f" (step {step})"
    if waiting_for := _text(region.get("waiting_for")):
        text += f"; waiting for: {waiting_for}"
    if eta := _text(region.get("eta")):
        text += f"; replica expected {eta}"
    if last_error := _text(region.get("last_error")):
        text += f"; error: {last_error}"
    return text


def _regions(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    regions = document.get("regions") or []
    return [r for r in regions if isinstance(r, Mapping)]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    # One event per line: an Azure error text may span several.
    return " ".join(str(value).split())
