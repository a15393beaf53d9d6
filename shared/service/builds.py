"""Build notices: a signed word from a pipeline that it pushed an image, recorded as a hint.

The signature is checked on the raw bytes before anything is parsed; a message id seen
before answers as it was answered the first time and changes nothing (remembered in the
table, so across restarts and instances, for longer than the signature tolerance).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from shared.errors import UnauthorizedError
from shared.intake.build_hook import check_build_body_size, parse_build_notice
from shared.intake.webhook_signature import TOLERANCE_SECONDS, SignatureRefused, verify
from shared.service.intake import accept_notices
from shared.service.reconcile import Clock, utc_now
from shared.service.runtime import Services

log = logging.getLogger("georollout.builds")

# A replay inside the signature tolerance must find the first answer; after it, the
# timestamp check refuses the replay anyway. Twice the tolerance leaves room for skew.
REMEMBER_FOR = timedelta(seconds=2 * TOLERANCE_SECONDS)


async def record_build_notice(
    services: Services,
    headers: Mapping[str, str],
    body: bytes,
    *,
    clock: Clock = utc_now,
    unix_now: float | None = None,
) -> dict[str, Any]:
    """Verify, dedupe and record one build notice; its answer (`{"rollout": <id>}`).

    UnauthorizedError (401) for a missing header, a stale timestamp or a signature no
    configured secret makes, before the body is read; InvalidInputError (400) for a body
    that is not a build notice of this registry's image. Nothing is written for either.
    """
    check_build_body_size(len(body))
    try:
        message = verify(
            services.config.build_webhook_keys,
            headers,
            body,
            now=time.time() if unix_now is None else unix_now,
        )
    except SignatureRefused as refused:
        log.warning("build notice refused: %s", refused.reason)
        raise UnauthorizedError(f"build notice refused: {refused.reason}") from None
    earlier = await services.rollouts.build_message_answer(message.message_id, clock())
    if earlier is not None:
        log.info("build message %s delivered again: answered as before", message.message_id)
        return earlier
    notices = parse_build_notice(body, registry=services.config.registry_login_server)
    result = await accept_notices(services, notices, clock=clock)
    answer = {"rollout": result.recorded[0]}
    return await services.rollouts.remember_build_message(
        message.message_id, answer, clock(), keep=REMEMBER_FOR
    )
