"""Whether a digest-pinned image can be pulled in a region: a manifest GET against that region's own replica."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

import aiohttp

# What a pull accepts: OCI and Docker manifests and indexes.
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


class ImageReferenceError(ValueError):
    """The image is not referenced as `<host>/<repository>@sha256:<hex>`."""


@dataclass(frozen=True)
class ImageRef:
    host: str
    repository: str
    digest: str


@dataclass(frozen=True)
class ImageLookup:
    """The replica's answer: `present` only on 200; `detail` says what was seen."""

    present: bool
    detail: str
    status: int | None = None


def parse_image_ref(image: str) -> ImageRef:
    name, sep, digest = image.partition("@")
    if not sep or not _DIGEST.match(digest):
        raise ImageReferenceError(
            f"image '{image}' must be referenced by digest: <registry>/<repository>@sha256:<64 hex>"
        )
    host, slash, repository = name.partition("/")
    # A tag before the digest (repo:tag@sha256:...) is allowed and ignored, as by docker.
    repository = repository.rsplit(":", 1)[0] if ":" in repository else repository
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not slash or not looks_like_host or not _REPOSITORY.match(repository):
        raise ImageReferenceError(
            f"image '{image}' must name its registry host and repository: <registry>/<repository>@sha256:<hex>"
        )
    return ImageRef(host=host, repository=repository, digest=digest)


async def lookup_image(
    registry_url: str, ref: ImageRef, ssl_context: ssl.SSLContext, *, timeout_s: float = 5.0
) -> ImageLookup:
    """GET the manifest by digest from `registry_url`, whatever host `ref` names."""
    url = f"{registry_url.rstrip('/')}/v2/{ref.repository}/manifests/{ref.digest}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, headers={"Accept": MANIFEST_ACCEPT}, ssl=ssl_context) as response,
        ):
            await response.read()
            if response.status == 200:
                return ImageLookup(True, f"manifest found at {url}", response.status)
            if response.status == 404:
                return ImageLookup(False, "manifest unknown", response.status)
            return ImageLookup(False, f"registry answered HTTP {response.status}", response.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return ImageLookup(False, f"registry unreachable: {type(error).__name__}: {error}")
