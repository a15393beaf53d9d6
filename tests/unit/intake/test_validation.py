"""Every validation error names its field; the grammars accept what OCI accepts and no more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.intake.acr_webhook import parse_acr_webhook
from shared.intake.eventgrid import parse_eventgrid_event
from shared.intake.validation import (
    MAX_BODY_BYTES,
    check_body_size,
    validate_digest,
    validate_repository,
    validate_tag,
)
from tests.unit.intake import samples


def mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = body
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return body


_DELETE = object()

CASES = [
    ("target.digest", "sha256:ABC", "invalid_digest"),
    ("target.digest", "sha256:" + "A" * 64, "invalid_digest"),
    ("target.digest", "sha512:" + "a" * 64, "invalid_digest"),
    ("target.digest", _DELETE, "missing_field"),
    ("target.digest", 42, "invalid_type"),
    ("target.repository", "Models/LLM", "invalid_repository"),
    ("target.repository", "a//b", "invalid_repository"),
    ("target.repository", "a/../b", "invalid_repository"),
    ("target.repository", "/a", "invalid_repository"),
    ("target.repository", "a" * 256, "invalid_repository"),
    ("target.repository", _DELETE, "missing_field"),
    ("target.tag", "-v1", "invalid_tag"),
    ("target.tag", "v" * 129, "invalid_tag"),
    ("target.tag", "v1:x", "invalid_tag"),
    ("target.size", -1, "invalid_size"),
    ("target.size", "12", "invalid_size"),
    ("timestamp", "yesterday", "invalid_timestamp"),
    ("request.host", "bad host!", "invalid_registry"),
    ("request.host", _DELETE, "missing_field"),
    ("target", "x", "invalid_type"),
]


@pytest.mark.parametrize(("path", "value", "code"), CASES)
def test_acr_webhook_errors_name_the_field(path: str, value: Any, code: str) -> None:
    body = mutate(samples.acr_webhook_push(), path, value)
    with pytest.raises(InvalidInputError) as caught:
        parse_acr_webhook(body)
    assert caught.value.field == path
    assert caught.value.detail_code == code
    assert caught.value.http_status == 400
    assert caught.value.to_body()["error"]["field"] == path


@pytest.mark.parametrize("build", [samples.eventgrid_schema_push, samples.cloudevent_push])
@pytest.mark.parametrize(("path", "value", "code"), CASES)
def test_eventgrid_errors_name_the_data_field(
    build: Callable[[], dict[str, Any]], path: str, value: Any, code: str
) -> None:
    event = mutate(build(), "data." + path, value)
    with pytest.raises(InvalidInputError) as caught:
        parse_eventgrid_event(event)
    assert caught.value.field == "data." + path
    assert caught.value.detail_code == code


def test_envelope_level_errors() -> None:
    for obj, field in [
        ([], "event"),
        ({"id": "x"}, "eventType"),
        ({"specversion": "1.0", "id": "x"}, "type"),
        ({"eventType": "Microsoft.ContainerRegistry.ImagePushed"}, "data"),
    ]:
        with pytest.raises(InvalidInputError) as caught:
            parse_eventgrid_event(obj)
        assert caught.value.field == field
    for obj, field in [("x", "body"), ({"id": "x"}, "action")]:
        with pytest.raises(InvalidInputError) as caught:
            parse_acr_webhook(obj)
        assert caught.value.field == field


def test_registry_given_by_configuration_replaces_missing_host() -> None:
    body = mutate(samples.acr_webhook_push(), "request", _DELETE)
    notice = parse_acr_webhook(body, registry="127.0.0.1:5001")
    assert notice.registry == "127.0.0.1:5001"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "repository",
    ["a", "models/llm", "a.b/c_d/e__f/g-h/i---j", "library/ubuntu", "0/1/2", "a" * 255],
)
def test_valid_repositories(repository: str) -> None:
    assert validate_repository(repository, "r") == repository


@pytest.mark.parametrize(
    "repository", ["", "A", "a/", "a_", "a___b", "a..b", "a.-b", "-a", "a/ /b", "ü"]
)
def test_invalid_repositories(repository: str) -> None:
    with pytest.raises(InvalidInputError):
        validate_repository(repository, "r")


def test_tags_and_digests() -> None:
    assert validate_tag("_x.Y-1", "t") == "_x.Y-1"
    assert validate_tag("v" * 128, "t")
    assert validate_digest("sha256:" + "0af" * 21 + "0", "d")
    for bad in [".v1", "", "v 1"]:
        with pytest.raises(InvalidInputError):
            validate_tag(bad, "t")


def test_body_size_limit() -> None:
    check_body_size(MAX_BODY_BYTES)
    with pytest.raises(PayloadTooLargeError) as caught:
        check_body_size(MAX_BODY_BYTES + 1)
    assert caught.value.http_status == 413
    assert caught.value.to_body()["error"]["code"] == "payload_too_large"
