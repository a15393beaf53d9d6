"""Standard Webhooks signatures (standardwebhooks.com, "Verifying Webhooks"): HMAC-SHA256 over
`<webhook-id>.<webhook-timestamp>.<raw body>`, keyed with the base64-decoded part of a
`whsec_<base64>` secret, sent as space-separated `v1,<base64>` entries.

The build webhook verifies with `verify` before the body is parsed; the `georollout`
command signs with `sign`. Comparison is in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# The spec's tolerance for webhook-timestamp against the receiver's clock.
TOLERANCE_SECONDS = 5 * 60
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
# Bounds on what is read before the signature is known to be good.
_MAX_ID_LENGTH = 256
_MAX_SIGNATURES = 16


class InvalidSecretError(ValueError):
    """A secret that is not `whsec_` followed by base64 (the message never repeats it)."""


class SignatureRefused(Exception):
    """The request is not signed by any configured secret; `reason` says which check failed
    (it names headers and rules, never a secret or a signature)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (the spec: the base64 after the prefix)."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise InvalidSecretError(f"a webhook secret must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecretError("a webhook secret must be base64 after whsec_") from None
    if len(key) < 16:
        raise InvalidSecretError("a webhook secret must hold at least 16 bytes")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message: `v1,<base64>`."""
    return f"{SIGNATURE_VERSION},{_digest(secret_key(secret), message_id, timestamp, body)}"


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    """A message whose signature matched: its id (for replay detection) and timestamp."""

    message_id: str
    timestamp: int


def verify(
    keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, *, now: float
) -> VerifiedMessage:
    """Check the three headers and the signature over the raw `body` against every key
    (rotation: any configured secret may sign); SignatureRefused when none matches."""
    if not keys:
        raise SignatureRefused("no build webhook secret is configured: every request is refused")
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) if not lowered.get(h)]
    if missing:
        raise SignatureRefused(f"missing header(s): {', '.join(missing)}")
    message_id, raw_timestamp = lowered[ID_HEADER], lowered[TIMESTAMP_HEADER].strip()
    if len(message_id) > _MAX_ID_LENGTH:
        raise SignatureRefused(f"{ID_HEADER} must be at most {_MAX_ID_LENGTH} characters")
    if not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        raise SignatureRefused(f"{TIMESTAMP_HEADER} must be Unix seconds")
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureRefused(
            f"{TIMESTAMP_HEADER} is more than {TOLERANCE_SECONDS // 60} minutes from now"
        )
    offered = [
        value
        for version, _, value in (
            entry.partition(",") for entry in lowered[SIGNATURE_HEADER].split()[:_MAX_SIGNATURES]
        )
        if version == SIGNATURE_VERSION and value
    ]
    matched = False
    for key in keys:
        expected = _digest(key, message_id, timestamp, body).encode("ascii")
        for value in offered:
            # Every pair is compared, in constant time: no early exit tells which came close.
            matched |= hmac.compare_digest(expected, value.encode("ascii", "replace"))
    if not matched:
        raise SignatureRefused("the signature matches no configured secret (or the body changed)")
    return VerifiedMessage(message_id, timestamp)


def _digest(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
