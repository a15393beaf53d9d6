"""The signer the command uses against the Standard Webhooks spec and its Python library.

The test vector is the one the spec's reference libraries check their signers against
(standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
`test_sign_function`; the PHP, JavaScript and other libraries use the same values).
Interoperating both ways with the `standardwebhooks` package is what tells a receiver
library will accept what `georollout notify` sends, and that the app accepts what any
spec-conforming sender signs.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from georollout_cli.notice import new_message_id, signed_headers
from shared.intake.webhook_signature import (
    TOLERANCE_SECONDS,
    InvalidSecretError,
    SignatureRefused,
    secret_key,
    sign,
    verify,
)

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
OTHER_SECRET = "whsec_" + "enl4d3Z1dHNycXBvbm1sa2ppaGdmZWRjYmE5ODc2NTQ="
BODY = json.dumps({"image": "127.0.0.1:5001/models/llm@sha256:" + "a" * 64}).encode()


def test_our_signature_is_the_specs_test_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD) == VECTOR_SIGNATURE


def test_the_library_agrees_with_the_test_vector_too() -> None:
    # Guards the interoperability tests below: they mean something only if the library
    # installed here signs as the spec says.
    library = standardwebhooks.Webhook(VECTOR_SECRET)
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC)
    assert library.sign(VECTOR_ID, at, VECTOR_PAYLOAD.decode()) == VECTOR_SIGNATURE


def test_the_test_vector_verifies_with_our_verify_at_its_own_time() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    verified = verify([secret_key(VECTOR_SECRET)], headers, VECTOR_PAYLOAD, now=VECTOR_TIMESTAMP)
    assert (verified.message_id, verified.timestamp) == (VECTOR_ID, VECTOR_TIMESTAMP)


def test_what_notify_sends_verifies_with_the_standardwebhooks_library() -> None:
    headers = signed_headers(SECRET, new_message_id(), int(time.time()), BODY)
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)


def test_what_the_library_signs_verifies_with_our_verify() -> None:
    library = standardwebhooks.Webhook(SECRET)
    message_id, now = new_message_id(), time.time()
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": library.sign(
            message_id, datetime.fromtimestamp(int(now), UTC), BODY.decode()
        ),
    }
    assert verify([secret_key(SECRET)], headers, BODY, now=now).message_id == message_id


def test_the_library_refuses_what_another_secret_signed() -> None:
    headers = signed_headers(OTHER_SECRET, new_message_id(), int(time.time()), BODY)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(BODY, headers)


def test_message_ids_are_fresh_and_prefixed() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("msg_") and len(i) == 36 for i in ids)


def _headers(secret: str = SECRET, *, at: int | None = None, body: bytes = BODY) -> dict[str, str]:
    return signed_headers(secret, "msg_test", int(time.time()) if at is None else at, body)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureRefused, match="matches no configured secret"):
        verify([secret_key(SECRET)], _headers(OTHER_SECRET), BODY, now=time.time())


def test_during_a_rotation_either_secret_may_sign() -> None:
    keys = [secret_key(SECRET), secret_key(OTHER_SECRET)]
    now = time.time()
    for signer in (SECRET, OTHER_SECRET):
        assert verify(keys, _headers(signer), BODY, now=now).message_id == "msg_test"
    third = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXY="
    with pytest.raises(SignatureRefused):
        verify(keys, _headers(third), BODY, now=now)


@pytest.mark.parametrize("offset", [-(TOLERANCE_SECONDS + 1), TOLERANCE_SECONDS + 1])
def test_a_timestamp_beyond_the_tolerance_is_refused(offset: int) -> None:
    now = int(time.time())
    with pytest.raises(SignatureRefused, match="minutes from now"):
        verify([secret_key(SECRET)], _headers(at=now + offset), BODY, now=now)


@pytest.mark.parametrize("offset", [-TOLERANCE_SECONDS, TOLERANCE_SECONDS])
def test_a_timestamp_at_the_tolerance_is_accepted(offset: int) -> None:
    now = int(time.time())
    assert verify([secret_key(SECRET)], _headers(at=now + offset), BODY, now=now)


def test_a_body_changed_after_signing_is_refused() -> None:
    headers = _headers()
    with pytest.raises(SignatureRefused):
        verify([secret_key(SECRET)], headers, BODY.replace(b"llm", b"llx"), now=time.time())


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_by_name(missing: str) -> None:
    headers = {k: v for k, v in _headers().items() if k != missing}
    with pytest.raises(SignatureRefused, match=missing):
        verify([secret_key(SECRET)], headers, BODY, now=time.time())


def test_one_good_entry_among_other_versions_and_bad_ones_is_enough() -> None:
    good = _headers()
    good["webhook-signature"] = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,whatever",
            good["webhook-signature"],
        ]
    )
    assert verify([secret_key(SECRET)], good, BODY, now=time.time())


@pytest.mark.parametrize(
    "bad", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="]
)
def test_a_secret_that_is_not_whsec_base64_of_16_bytes_is_refused_without_repeating_it(
    bad: str,
) -> None:
    with pytest.raises(InvalidSecretError) as raised:
        secret_key(bad)
    assert not bad or bad.removeprefix("whsec_") not in str(raised.value)
