"""The build-system webhook's body: the image a pipeline says it pushed, its tags, its build.

Parsed only after the Standard Webhooks signature matched (`webhook_signature.verify`).
The notice is a hint like every other: the registry still has to hold the digest, and a
claimed tag only counts once the registry confirms it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain.push import Build, NoticeSource, PushNotice
from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.intake.validation import (
    parse_json_body,
    require_mapping,
    require_str,
    validate_digest,
    validate_registry,
    validate_repository,
    validate_tag,
)

MAX_BUILD_BODY_BYTES = 64 * 1024
MAX_BUILD_FIELD_CHARS = 512
MAX_BUILD_TAGS = 16
BUILD_FIELDS = ("system", "id", "url", "commit", "source")
_BODY_KEYS = frozenset({"image", "tags", "build"})


def check_build_body_size(size: int) -> None:
    """413 for a build notice over 64 KiB (checked before the signature is computed)."""
    if size > MAX_BUILD_BODY_BYTES:
        raise PayloadTooLargeError(
            f"request body of {size} bytes exceeds {MAX_BUILD_BODY_BYTES} bytes"
        )


def parse_build_notice(body: bytes, *, registry: str) -> list[PushNotice]:
    """The notices a build notice stands for: one per tag (one without a tag when it names
    none), each carrying the build. `registry` is the configured login server: an image of
    any other registry is a 400 naming `image`."""
    document = require_mapping(parse_json_body(body), "body")
    unknown = sorted(set(document) - _BODY_KEYS)
    if unknown:
        raise InvalidInputError(
            unknown[0], "is not a field of a build notice (image, tags, build)", "unknown_field"
        )
    image_registry, repository, digest = _image(require_str(document, "image", "image"), registry)
    tags = _tags(document.get("tags"))
    build = _build(document.get("build"))
    return [
        PushNotice(
            registry=image_registry,
            repository=repository,
            digest=digest,
            source=NoticeSource.BUILD_WEBHOOK,
            tag=tag,
            build=build,
        )
        for tag in (tags or (None,))
    ]


def _image(value: str, registry: str) -> tuple[str, str, str]:
    name, at, digest = value.partition("@")
    host, slash, repository = name.partition("/")
    if not at or not slash:
        raise InvalidInputError(
            "image",
            "must be <login server>/<repository>@sha256:<64 hex>: georollout needs the digest",
            "invalid_image",
        )
    host = validate_registry(host, "image")
    if host != registry.lower():
        raise InvalidInputError(
            "image", f"names registry {host}; this georollout watches {registry}", "wrong_registry"
        )
    return host, validate_repository(repository, "image"), validate_digest(digest, "image")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InvalidInputError("tags", "must be a JSON array of tags", "invalid_type")
    if len(value) > MAX_BUILD_TAGS:
        raise InvalidInputError(
            "tags", f"at most {MAX_BUILD_TAGS} tags per notice", "too_many_tags"
        )
    tags: list[str] = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise InvalidInputError(f"tags[{index}]", "must be a string", "invalid_type")
        tags.append(validate_tag(tag, f"tags[{index}]"))
    return tuple(dict.fromkeys(tags))


def _build(value: Any) -> Build | None:
    if value is None:
        return None
    fields: Mapping[str, Any] = require_mapping(value, "build")
    unknown = sorted(set(fields) - set(BUILD_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"build.{unknown[0]}",
            f"is not a build field ({', '.join(BUILD_FIELDS)})",
            "unknown_field",
        )
    values: dict[str, str | None] = {}
    for key in BUILD_FIELDS:
        item = fields.get(key)
        if item is None or item == "":
            values[key] = None
            continue
        if not isinstance(item, str):
            raise InvalidInputError(f"build.{key}", "must be a string", "invalid_type")
        if len(item) > MAX_BUILD_FIELD_CHARS:
            raise InvalidInputError(
                f"build.{key}", f"must be at most {MAX_BUILD_FIELD_CHARS} characters", "too_long"
            )
        values[key] = item
    if not any(values.values()):
        return None
    return Build(
        system=values["system"],
        id=values["id"],
        url=values["url"],
        commit=values["commit"],
        source=values["source"],
    )
