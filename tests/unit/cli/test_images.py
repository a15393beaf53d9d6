"""IMAGE_OR_ID: ids whole or cut short, images by digest or by tag, with the product's grammar."""

from __future__ import annotations

import pytest

from georollout_cli.images import (
    ImageDigest,
    ImageRefError,
    ImageTag,
    RolloutId,
    ShortRolloutId,
    parse_image_or_id,
    parse_pushed_image,
    short_id,
)
from shared.domain.model import rollout_id

HEX = "3f2a0c9d1b7e" + "0" * 52
DIGEST = f"sha256:{HEX}"


def test_an_image_by_digest_gives_the_apps_own_rollout_id() -> None:
    ref = parse_image_or_id(f"127.0.0.1:5001/models/llm@{DIGEST}")
    assert ref == ImageDigest("127.0.0.1:5001", "models/llm", DIGEST)
    assert isinstance(ref, ImageDigest)
    assert ref.rollout_id == rollout_id("127.0.0.1:5001", "models/llm", DIGEST)
    assert ref.rollout_id == f"127.0.0.1_5001~models~llm~sha256-{HEX}"


def test_a_login_server_is_case_insensitive() -> None:
    ref = parse_image_or_id(f"Contoso.AzureCR.io/models/llm@{DIGEST}")
    assert isinstance(ref, ImageDigest)
    assert ref.rollout_id == f"contoso.azurecr.io~models~llm~sha256-{HEX}"


def test_an_image_by_tag() -> None:
    assert parse_image_or_id("contoso.azurecr.io/team/models/llm:v2.1") == ImageTag(
        "contoso.azurecr.io", "team/models/llm", "v2.1"
    )


def test_a_tag_and_a_digest_the_digest_decides_and_the_tag_is_kept() -> None:
    ref = parse_pushed_image(f"127.0.0.1:5001/models/llm:v2@{DIGEST}")
    assert ref == ImageDigest("127.0.0.1:5001", "models/llm", DIGEST, tag="v2")
    assert ref.reference == f"127.0.0.1:5001/models/llm@{DIGEST}"


def test_a_whole_rollout_id() -> None:
    value = rollout_id("127.0.0.1:5001", "models/llm", DIGEST)
    assert parse_image_or_id(value) == RolloutId(value)


def test_a_cut_short_id_as_status_lists_it_reads_back() -> None:
    value = short_id(rollout_id("127.0.0.1:5001", "models/llm", DIGEST))
    assert value == "127.0.0.1_5001~models~llm~sha256-3f2a0c9d1b7e"
    assert parse_image_or_id(value) == ShortRolloutId(
        "127.0.0.1:5001", "models/llm", "sha256:3f2a0c9d1b7e"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("127.0.0.1:5001/models/llm", "neither a digest nor a tag"),
        ("models-llm", "neither a rollout id"),
        ("127.0.0.1:5001/Models/llm:v1", "not a repository"),
        ("127.0.0.1:5001/models//llm:v1", "not a repository"),
        ("127.0.0.1:5001/models/llm:-bad", "not a tag"),
        ("127.0.0.1:5001/models/llm@sha256:ABC", "not a digest"),
        (f"127.0.0.1:5001/models/llm@md5:{HEX}", "not a digest"),
        ("/models/llm:v1", "not an image"),
        ("bad host!/models/llm:v1", "not a registry"),
        ("127.0.0.1_5001~models~llm~sha256-3f2a", "at least 6 hex digits"),
        ("127.0.0.1_5001~models~llm~sha256-XYZ123", "neither a rollout id"),
        ("127.0.0.1_5001~models~llm~sha256-" + "a" * 65, "neither a rollout id"),
        ("a~b", "neither a rollout id"),
    ],
)
def test_what_names_nothing_is_refused_with_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(ImageRefError, match=says):
        parse_image_or_id(text)


def test_a_notice_needs_the_digest() -> None:
    with pytest.raises(ImageRefError, match="has no digest"):
        parse_pushed_image("127.0.0.1:5001/models/llm:v2")
