"""Event Grid triggers: ACR pushes in, and georollout's own events driving the completion step.

An event that fails validation is logged and acknowledged: answering 5xx
would make Event Grid retry a bad event for a day. Only real faults (the
table unreachable, say) raise, so Event Grid delivers again.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from shared.errors import InvalidInputError
from shared.intake.eventgrid import parse_eventgrid_event
from shared.intake.validation import check_nesting_depth
from shared.service.intake import accept_notices, check_regions
from shared.service.reconcile import reconcile
from shared.service.runtime import services

log = logging.getLogger("georollout.events")

AnyEvent = func.EventGridEvent | func.CloudEvent


def event_document(event: AnyEvent) -> dict[str, Any]:
    """The event as the JSON it arrived as (the host hands the function parsed objects)."""
    time = None
    if isinstance(event, func.CloudEvent):
        time = event.time.isoformat() if event.time else None
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": time,
            "data": event.get_json(),
        }
    time = event.event_time.isoformat() if event.event_time else None
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": time,
        "dataVersion": event.data_version,
        "data": event.get_json(),
    }


async def image_pushed(event: AnyEvent) -> None:
    app = await services()
    try:
        document = event_document(event)
        # The same nesting limit as the HTTP routes: a deeper event is invalid, acknowledged.
        check_nesting_depth(document, "event")
        notice = parse_eventgrid_event(document, registry=app.config.registry_login_server)
        # data.location may name a replica outside GEOROLLOUT_REGIONS: still a push.
        notices = check_regions(app, [notice], strict=False)
    except InvalidInputError as error:
        log.warning("event %s acknowledged and ignored: %s", event.id, error.message)
        return
    result = await accept_notices(app, notices)
    if result.ignored:
        log.info("event %s ignored: %s", event.id, "; ".join(result.ignored))


async def rollout_event(event: AnyEvent) -> None:
    """The completion function: any georollout event moves its rollout on (deploying if due)."""
    data = event.get_json()
    rollout_id = data.get("rollout_id") if isinstance(data, dict) else None
    if not isinstance(rollout_id, str) or not rollout_id:
        log.warning("event %s has no rollout_id; acknowledged and ignored", event.id)
        return
    app = await services()
    await reconcile(app, rollout_id)
