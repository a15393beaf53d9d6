"""ACR webhook payloads (push, ping, delete, chart_push, chart_delete, quarantine): one event each."""

from __future__ import annotations

from typing import Any

from shared.domain.push import DeleteNotice, NoticeSource, PushNotice
from shared.intake.notices import Ignored
from shared.intake.push_record import parse_delete_record, parse_push_record
from shared.intake.validation import optional_str, require_mapping, require_str

_IGNORED_ACTIONS = {
    "ping": "ping",
    "delete": "deletes create no rollout",
    "chart_push": "Helm chart pushes are not deployable",
    "chart_delete": "chart deletes create no rollout",
    "quarantine": "quarantined images are not deployed",
}


def parse_acr_webhook(
    obj: Any, *, registry: str | None = None, region: str | None = None
) -> PushNotice | DeleteNotice | Ignored:
    """An ACR webhook body -> PushNotice for `push`, Ignored for every other action.

    `region` is set for a regional webhook (a hint that the replica has the image).
    """
    payload = require_mapping(obj, "body")
    action = require_str(payload, "action", "action")
    event_id = optional_str(payload, "id", "id")
    if action == "delete" and isinstance(payload.get("target"), dict):
        deleted = parse_delete_record(
            payload, prefix="", source=NoticeSource.ACR_WEBHOOK, registry=registry
        )
        if deleted is not None:
            return deleted
    if action != "push":
        reason = _IGNORED_ACTIONS.get(action, f"unsupported action {action}")
        return Ignored(reason, kind=action, event_id=event_id)
    return parse_push_record(
        payload, prefix="", source=NoticeSource.ACR_WEBHOOK, registry=registry, region=region
    )
