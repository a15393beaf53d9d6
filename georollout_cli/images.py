"""What IMAGE_OR_ID names: a rollout id (whole or cut short), an image by digest, or an image by
tag. Parsed with the product's own grammar (`shared.intake.validation`) and id scheme
(`shared.domain.model`), so the command accepts exactly what the function app does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.domain.model import parse_rollout_id, rollout_id
from shared.intake.validation import DIGEST, REGISTRY, REPOSITORY, REPOSITORY_MAX_LENGTH, TAG

_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")
_HEX = re.compile(r"[0-9a-f]+")
# Shortest digest prefix accepted in a cut-short id: fewer would match too often to be useful.
MIN_SHORT_HEX = 6
FULL_HEX = 64


class ImageRefError(ValueError):
    """IMAGE_OR_ID names nothing the API can find; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class RolloutId:
    """A whole rollout id, as `GET /api/rollouts/{id}` takes it."""

    value: str

    def describe(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ShortRolloutId:
    """An id whose digest is cut short (as `status` lists them): found through the listing."""

    registry: str
    repository: str
    digest_prefix: str  # "sha256:" followed by at least MIN_SHORT_HEX hex digits

    def describe(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest_prefix}…"


@dataclass(frozen=True, slots=True)
class ImageDigest:
    """`<login server>/<repository>@sha256:<hex>`; `tag` when it was written `:tag@sha256:`."""

    registry: str
    repository: str
    digest: str
    tag: str | None = None

    @property
    def rollout_id(self) -> str:
        return rollout_id(self.registry, self.repository, self.digest)

    @property
    def reference(self) -> str:
        """The image as the build webhook's `image` field takes it (no tag)."""
        return f"{self.registry}/{self.repository}@{self.digest}"

    def describe(self) -> str:
        return self.reference


@dataclass(frozen=True, slots=True)
class ImageTag:
    """`<login server>/<repository>:<tag>`: the newest rollout that tag names."""

    registry: str
    repository: str
    tag: str

    def describe(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


RolloutRef = RolloutId | ShortRolloutId | ImageDigest | ImageTag


def parse_image_or_id(text: str) -> RolloutRef:
    """IMAGE_OR_ID: an image reference when it holds a `/` (the login server comes first),
    a rollout id otherwise. ImageRefError when it is neither."""
    value = text.strip()
    if "/" in value:
        return parse_image(value)
    return _parse_id(value)


def parse_image(text: str) -> ImageDigest | ImageTag:
    """`<login server>/<repository>` followed by `@sha256:<hex>`, `:<tag>` or both."""
    name, at, digest = text.strip().partition("@")
    host, slash, path = name.partition("/")
    if not slash or not host or not path:
        raise ImageRefError(
            f"{text!r} is not an image: expected <login server>/<repository>@sha256:<hex> "
            "or <login server>/<repository>:<tag>"
        )
    repository, colon, tag = path.partition(":")
    registry = host.lower()
    if not REGISTRY.fullmatch(registry):
        raise ImageRefError(f"{text!r}: {host!r} is not a registry login server (host[:port])")
    if len(repository) > REPOSITORY_MAX_LENGTH or not REPOSITORY.fullmatch(repository):
        raise ImageRefError(
            f"{text!r}: {repository!r} is not a repository name (lowercase path components "
            f"separated by /, at most {REPOSITORY_MAX_LENGTH} characters)"
        )
    if colon and not TAG.fullmatch(tag):
        raise ImageRefError(f"{text!r}: {tag!r} is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")
    if at:
        if not DIGEST.fullmatch(digest):
            raise ImageRefError(
                f"{text!r}: {digest!r} is not a digest (sha256: followed by 64 lowercase hex)"
            )
        return ImageDigest(registry, repository, digest, tag if colon else None)
    if colon:
        return ImageTag(registry, repository, tag)
    raise ImageRefError(
        f"{text!r} names neither a digest nor a tag: add @sha256:<hex> (preferred) or :<tag>"
    )


def parse_pushed_image(text: str) -> ImageDigest:
    """The IMAGE of `notify`: it must carry the digest (a tag alone can move)."""
    image = parse_image(text)
    if not isinstance(image, ImageDigest):
        raise ImageRefError(
            f"{text!r} has no digest: a build notice needs <login server>/<repository>@sha256:<hex> "
            "(pass the tag with --tag)"
        )
    return image


def _parse_id(value: str) -> RolloutId | ShortRolloutId:
    problem = (
        f"{value!r} is neither a rollout id (<registry>~<repository, / as ~>~sha256-<hex>) "
        "nor an image (<login server>/<repository>@sha256:<hex> or :<tag>)"
    )
    if not _ID_CHARACTERS.fullmatch(value):
        raise ImageRefError(problem)
    try:
        registry, repository, digest = parse_rollout_id(value)
    except ValueError:
        raise ImageRefError(problem) from None
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or not _HEX.fullmatch(hexpart) or len(hexpart) > FULL_HEX:
        raise ImageRefError(problem)
    if len(hexpart) == FULL_HEX:
        return RolloutId(value)
    if len(hexpart) < MIN_SHORT_HEX:
        raise ImageRefError(
            f"{value!r}: a cut-short id needs at least {MIN_SHORT_HEX} hex digits of the digest"
        )
    return ShortRolloutId(registry.lower(), repository, digest)


def short_id(rollout_id_value: str, hex_digits: int = 12) -> str:
    """A rollout id with its digest cut to `hex_digits` (parse_image_or_id reads it back)."""
    head, dash, hexpart = rollout_id_value.rpartition("-")
    if not dash or len(hexpart) <= hex_digits:
        return rollout_id_value
    return f"{head}-{hexpart[:hex_digits]}"
