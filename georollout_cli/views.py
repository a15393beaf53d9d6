"""Rollout documents as rows and fields of text, the same for the plain and the rich output:
what is shown is decided here, how it looks in `render`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from georollout_cli.durations import format_duration
from georollout_cli.images import short_id

SHORT_HEX = 12
LIST_COLUMNS = ("ID", "REPOSITORY", "DIGEST", "TAGS", "STATE", "UPDATED")
REGION_COLUMNS = (
    "REGION",
    "WAVE",
    "STATE",
    "STEP",
    "TRAFFIC",
    "REPLICATED",
    "DEPLOY STARTED",
    "LIVE",
    "PROBES",
    "NOTE",
)
BUILD_COLUMNS = ("SYSTEM", "ID", "COMMIT", "URL", "SOURCE", "RECEIVED")
HISTORY_COLUMNS = ("AT", "ACTION", "ACTOR", "REGIONS", "OUTCOME", "REASON")
# Operator actions shown by `status ID` (the newest; the document keeps more).
HISTORY_SHOWN = 10
Row = tuple[str, ...]


def short_digest(digest: str) -> str:
    algorithm, colon, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:SHORT_HEX]}" if colon else digest


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the document, None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock_time(value: Any) -> str:
    """`2026-11-24 07:10:31Z`: UTC to the second, as the documents give it."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if parsed else "-"


def since(value: Any, start: datetime | None) -> str:
    """`+4.2s`: how long after `start` (the rollout's creation) `value` came."""
    at = parse_time(value)
    if at is None or start is None:
        return "-"
    return "+" + format_duration((at - start).total_seconds())


def tags_text(document: Mapping[str, Any]) -> str:
    """Confirmed tags, then the claimed ones the registry has not confirmed yet."""
    tags = [str(t) for t in document.get("tags") or []]
    tags += [f"{t} (pending)" for t in document.get("pending_tags") or []]
    return ", ".join(tags) or "-"


def list_rows(documents: Sequence[Mapping[str, Any]]) -> list[Row]:
    return [
        (
            short_id(str(d.get("id", "")), SHORT_HEX),
            str(d.get("repository", "")),
            short_digest(str(d.get("digest", ""))),
            tags_text(d),
            str(d.get("state", "")),
            clock_time(d.get("updated_at")),
        )
        for d in documents
    ]


def detail_fields(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rollout's own fields, label and text; the optional ones only when set."""
    fields = [
        ("id", str(document.get("id", ""))),
        (
            "image",
            f"{document.get('registry')}/{document.get('repository')}@{document.get('digest')}",
        ),
        ("tags", tags_text(document)),
        ("state", str(document.get("state", ""))),
        ("created", clock_time(document.get("created_at"))),
        ("updated", clock_time(document.get("updated_at"))),
    ]
    optional = (
        ("endpoint", "endpoint"),
        ("ignored", "ignored_reason"),
        ("superseded by", "superseded_by"),
        ("step error", "step_error"),
        ("deleted from registry", "deleted_from_registry_at"),
        ("rolled back", "rolled_back_at"),
        ("rollback reason", "rollback_reason"),
    )
    fields += [(label, _one_line(document[key])) for label, key in optional if document.get(key)]
    if document.get("approval") not in (None, "none"):
        gates = [g for g in document.get("approvals") or [] if isinstance(g, Mapping)]
        said = "; ".join(
            f"wave {g.get('wave')} approved by {g.get('approved_by')}"
            if g.get("approved_at")
            else f"wave {g.get('wave')} waiting since {clock_time(g.get('opened_at'))}"
            for g in gates
        )
        fields.append(("approval", f"{document['approval']}" + (f" ({said})" if said else "")))
    return fields


def region_rows(document: Mapping[str, Any]) -> list[Row]:
    """Each region with its timings relative to the rollout's creation."""
    created = parse_time(document.get("created_at"))
    rows: list[Row] = []
    for region in document.get("regions") or []:
        notes = []
        if region.get("soaking") and region.get("soak_until"):
            notes.append(f"soaking until {clock_time(region['soak_until'])}")
        elif region.get("waiting_for"):
            notes.append(f"waiting for: {_one_line(region['waiting_for'])}")
        if region.get("eta"):
            notes.append(f"replica expected {clock_time(region['eta'])}")
        if region.get("last_error"):
            notes.append(f"error: {_one_line(region['last_error'])}")
        if region.get("probing_stopped"):
            notes.append("probing stopped")
        if region.get("held"):
            notes.append(f"held by an operator (in {region.get('held_in') or region.get('state')})")
        if int(region.get("attempt") or 1) > 1:
            notes.append(f"attempt {region['attempt']}")
        rows.append(
            (
                str(region.get("region", "")) + (" (primary)" if region.get("primary") else ""),
                str(region.get("wave", "-")),
                str(region.get("state", "")),
                str(region.get("deploy_step") or "-"),
                f"{region['traffic_percent']}%" if "traffic_percent" in region else "-",
                since(region.get("replicated_at"), created),
                since(region.get("deploy_started_at"), created),
                since(region.get("live_at"), created),
                str(region.get("probe_attempts", "-")),
                "; ".join(notes) or "-",
            )
        )
    return rows


def build_rows(document: Mapping[str, Any]) -> list[Row]:
    """The builds that announced the digest (`builds`, when the document has them)."""
    return [
        (
            *(str(build.get(name) or "-") for name in ("system", "id", "commit", "url", "source")),
            clock_time(build.get("received_at")),
        )
        for build in document.get("builds") or []
        if isinstance(build, Mapping)
    ]


def history_rows(document: Mapping[str, Any]) -> list[Row]:
    """The newest operator actions, accepted or refused (`history`, when the document has it)."""
    entries = [e for e in document.get("history") or [] if isinstance(e, Mapping)]
    rows: list[Row] = []
    for entry in entries[-HISTORY_SHOWN:]:
        actor = str(entry.get("actor") or "-")
        if not entry.get("actor_verified"):
            actor += " (unverified)"
        outcome = str(entry.get("outcome") or "-")
        if entry.get("message"):
            outcome += f": {_one_line(entry['message'])}"
        rows.append(
            (
                clock_time(entry.get("at")),
                str(entry.get("action") or "-"),
                actor,
                ", ".join(str(r) for r in entry.get("regions") or []) or "-",
                outcome,
                _one_line(entry.get("reason") or "-"),
            )
        )
    return rows


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())
