"""Proving a webhook wants the events before any are sent, as Event Grid does when a subscription is created.

Event Grid schema: a `Microsoft.EventGrid.SubscriptionValidationEvent` POSTed with
`aeg-event-type: SubscriptionValidation`; the endpoint must answer 200 with
`{"validationResponse": <validationCode>}`. CloudEvents: the CloudEvents webhook
abuse-protection OPTIONS request; the endpoint must answer 2xx with `WebHook-Allowed-Origin`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import aiohttp

from devenv.eventgrid.config import InputSchema, SubscriptionSpec, TopicSpec

REQUEST_ORIGIN = "eventgrid.azure.net"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"


class ValidationFailedError(Exception):
    """The endpoint did not complete the handshake; the message says how."""


async def validate_endpoint(
    session: aiohttp.ClientSession,
    topic: TopicSpec,
    subscription: SubscriptionSpec,
    timeout_s: float,
) -> None:
    """Run the handshake for the topic's schema; raise ValidationFailedError when the endpoint fails it."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        if topic.input_schema is InputSchema.EVENT_GRID:
            await _validation_event(session, topic, subscription, timeout)
        else:
            await _abuse_protection(session, subscription, timeout)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ValidationFailedError(
            f"could not reach {subscription.endpoint}: {type(error).__name__}: {error}"
        ) from None


async def _validation_event(
    session: aiohttp.ClientSession,
    topic: TopicSpec,
    subscription: SubscriptionSpec,
    timeout: aiohttp.ClientTimeout,
) -> None:
    code = str(uuid.uuid4()).upper()
    event = {
        "id": str(uuid.uuid4()),
        "topic": topic.resource_id,
        "subject": "",
        "data": {"validationCode": code},
        "eventType": VALIDATION_EVENT_TYPE,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "metadataVersion": "1",
        "dataVersion": "2",
    }
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "aeg-event-type": "SubscriptionValidation",
        "aeg-subscription-name": subscription.name.upper(),
        "aeg-delivery-count": "0",
        "aeg-metadata-version": "1",
        "aeg-data-version": "2",
    }
    async with session.post(
        subscription.endpoint, data=json.dumps([event]), headers=headers, timeout=timeout
    ) as response:
        text = await response.text()
        if response.status != 200:
            raise ValidationFailedError(
                f"validation event answered {response.status}, expected 200: {text[:200]}"
            )
    try:
        answer = json.loads(text)
    except ValueError:
        raise ValidationFailedError(f"validation answer is not JSON: {text[:200]!r}") from None
    returned = answer.get("validationResponse") if isinstance(answer, dict) else None
    if returned is None:
        raise ValidationFailedError(f"validation answer has no validationResponse: {text[:200]}")
    if str(returned).lower() != code.lower():
        raise ValidationFailedError(
            f"validationResponse {returned!r} does not match the validationCode sent"
        )


async def _abuse_protection(
    session: aiohttp.ClientSession, subscription: SubscriptionSpec, timeout: aiohttp.ClientTimeout
) -> None:
    headers = {"WebHook-Request-Origin": REQUEST_ORIGIN, "WebHook-Request-Rate": "120"}
    async with session.options(subscription.endpoint, headers=headers, timeout=timeout) as response:
        allowed = response.headers.get("WebHook-Allowed-Origin")
        if not 200 <= response.status < 300:
            raise ValidationFailedError(
                f"abuse-protection OPTIONS answered {response.status}, expected 200"
            )
    if allowed is None:
        raise ValidationFailedError("abuse-protection answer has no WebHook-Allowed-Origin header")
    if allowed.strip() not in ("*", REQUEST_ORIGIN):
        raise ValidationFailedError(
            f"WebHook-Allowed-Origin is {allowed!r}, not {REQUEST_ORIGIN!r} or '*'"
        )
