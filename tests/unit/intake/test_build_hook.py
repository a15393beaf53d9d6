"""The build notice's body: one registry's image by digest, tags, and bounded build fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.push import Build, NoticeSource
from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.intake.build_hook import (
    MAX_BUILD_BODY_BYTES,
    MAX_BUILD_FIELD_CHARS,
    check_build_body_size,
    parse_build_notice,
)
from shared.intake.webhook_signature import SignatureRefused, secret_key, sign, verify

REGISTRY = "contoso.azurecr.io"
DIGEST = "sha256:" + "a" * 64


def body(**fields: Any) -> bytes:
    return json.dumps({"image": f"{REGISTRY}/models/llm@{DIGEST}", **fields}).encode()


def test_one_notice_per_tag_each_carrying_the_build() -> None:
    notices = parse_build_notice(
        body(tags=["v2", "stable", "v2"], build={"system": "jenkins", "id": "12", "url": ""}),
        registry=REGISTRY,
    )
    assert [n.tag for n in notices] == ["v2", "stable"]
    assert {n.build for n in notices} == {Build(system="jenkins", id="12")}
    assert {(n.registry, n.repository, n.digest, n.source) for n in notices} == {
        (REGISTRY, "models/llm", DIGEST, NoticeSource.BUILD_WEBHOOK)
    }


def test_a_notice_without_tags_or_build_is_one_untagged_notice() -> None:
    (notice,) = parse_build_notice(body(), registry=REGISTRY.upper())
    assert notice.tag is None and notice.build is None


@pytest.mark.parametrize(
    ("document", "field", "code"),
    [
        ({"image": f"other.azurecr.io/models/llm@{DIGEST}"}, "image", "wrong_registry"),
        ({"image": f"{REGISTRY}/models/llm:v2"}, "image", "invalid_image"),
        ({"image": f"{REGISTRY}/Models@{DIGEST}"}, "image", "invalid_repository"),
        ({"image": f"{REGISTRY}/models/llm@sha256:short"}, "image", "invalid_digest"),
        ({"image": f"{REGISTRY}/models/llm@{DIGEST}", "tags": "v2"}, "tags", "invalid_type"),
        ({"image": f"{REGISTRY}/models/llm@{DIGEST}", "tags": ["-bad"]}, "tags[0]", "invalid_tag"),
        ({"image": f"{REGISTRY}/models/llm@{DIGEST}", "tags": ["v"] * 17}, "tags", "too_many_tags"),
        (
            {"image": f"{REGISTRY}/models/llm@{DIGEST}", "build": {"id": 7}},
            "build.id",
            "invalid_type",
        ),
        (
            {
                "image": f"{REGISTRY}/models/llm@{DIGEST}",
                "build": {"url": "x" * (MAX_BUILD_FIELD_CHARS + 1)},
            },
            "build.url",
            "too_long",
        ),
        (
            {"image": f"{REGISTRY}/models/llm@{DIGEST}", "build": {"who": "me"}},
            "build.who",
            "unknown_field",
        ),
        ({"image": f"{REGISTRY}/models/llm@{DIGEST}", "extra": 1}, "extra", "unknown_field"),
        ({"tags": ["v1"]}, "image", "missing_field"),
    ],
)
def test_a_body_that_is_not_a_build_notice_is_a_400_naming_the_field(
    document: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_build_notice(json.dumps(document).encode(), registry=REGISTRY)
    assert (caught.value.field, caught.value.detail_code) == (field, code)


def test_a_body_over_64_kib_is_a_413_before_anything_else() -> None:
    check_build_body_size(MAX_BUILD_BODY_BYTES)
    with pytest.raises(PayloadTooLargeError):
        check_build_body_size(MAX_BUILD_BODY_BYTES + 1)


def test_with_no_secret_configured_every_request_is_refused() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    payload = body()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": sign(secret, "msg_1", 1700000000, payload),
    }
    assert verify([secret_key(secret)], headers, payload, now=1700000000).message_id == "msg_1"
    with pytest.raises(SignatureRefused, match="no build webhook secret is configured"):
        verify([], headers, payload, now=1700000000)
