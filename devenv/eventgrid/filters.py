"""Which events a subscription wants: Event Grid's event-type and subject filters."""

from __future__ import annotations

from typing import Any

from devenv.eventgrid.config import InputSchema, SubscriptionSpec
from devenv.eventgrid.event_schemas import event_subject, event_type


def subscription_wants(
    subscription: SubscriptionSpec, schema: InputSchema, event: dict[str, Any]
) -> bool:
    """True when `event` passes the subscription's filters (Azure compares event types case-insensitively)."""
    if subscription.included_event_types is not None:
        wanted = {t.lower() for t in subscription.included_event_types}
        if event_type(schema, event).lower() not in wanted:
            return False
    subject = event_subject(schema, event)
    begins, ends = subscription.subject_begins_with, subscription.subject_ends_with
    if not subscription.is_subject_case_sensitive:
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    return subject.startswith(begins) and subject.endswith(ends)
