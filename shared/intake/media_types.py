"""Which manifests are deployable images: an image manifest with an image config, or an index of such.

The event's media type alone cannot tell: a Helm 3 chart, a signature or an
SBOM arrives as an ordinary push of an OCI manifest, told apart only by the
config media type or `artifactType`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
ACR_HELM_CHART = "application/vnd.acr.helm.chart"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = IMAGE_MANIFESTS | INDEXES | {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}
IMAGE_CONFIGS = frozenset({OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG})
# The Accept list a probe or inspection sends for a manifest.
MANIFEST_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)


@dataclass(frozen=True, slots=True)
class Deployable:
    """A deployable image. `image_size_bytes` is config plus layers (None for an index);
    `platform_manifests` are an index's image manifest digests (their configs are not
    checked here: inspect the one you deploy)."""

    kind: Literal["image", "index"]
    image_size_bytes: int | None = None
    platform_manifests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotDeployable:
    """Not an image: the reason is recorded as the rollout's `ignored_reason`."""

    reason: str


ManifestVerdict = Deployable | NotDeployable


def is_manifest_media_type(media_type: str) -> bool:
    """True for manifest and index media types (a registry event about a manifest, not a blob)."""
    return _base(media_type) in MANIFEST_MEDIA_TYPES


def classify_media_types(
    manifest_media_type: str, config_media_type: str | None, artifact_type: str | None = None
) -> ManifestVerdict:
    """The verdict from media types alone, for a single-platform manifest."""
    manifest_media_type = _base(manifest_media_type)
    if manifest_media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        return NotDeployable("Docker schema 1 manifests are not supported")
    if manifest_media_type == ACR_HELM_CHART:
        return NotDeployable("a Helm chart, not an image")
    if manifest_media_type not in IMAGE_MANIFESTS:
        return NotDeployable(f"{manifest_media_type} is not an image manifest")
    if artifact_type:
        return NotDeployable(f"an OCI artifact ({artifact_type}), not an image")
    if config_media_type == HELM_CONFIG:
        return NotDeployable("a Helm chart, not an image")
    if config_media_type not in IMAGE_CONFIGS:
        return NotDeployable(
            f"config media type {config_media_type} is not an image config "
            "(a signature, SBOM or other artifact)"
        )
    return Deployable(kind="image")


def is_deployable_manifest(
    manifest: Mapping[str, Any] | bytes | str, media_type: str | None = None
) -> ManifestVerdict:
    """The verdict for a manifest document (`media_type`: the Content-Type it was served with)."""
    document = _load(manifest)
    if document is None:
        return NotDeployable("the manifest is not a JSON object")
    if document.get("schemaVersion") == 1:
        return NotDeployable("Docker schema 1 manifests are not supported")
    declared = document.get("mediaType") or media_type
    if not isinstance(declared, str) or not declared:
        declared = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    declared = _base(declared)
    if declared in INDEXES:
        return _index_verdict(document)
    config = document.get("config")
    config_type = config.get("mediaType") if isinstance(config, Mapping) else None
    artifact = document.get("artifactType")
    verdict = classify_media_types(
        declared,
        config_type if isinstance(config_type, str) else None,
        artifact if isinstance(artifact, str) else None,
    )
    if isinstance(verdict, NotDeployable):
        return verdict
    return Deployable(kind="image", image_size_bytes=_image_size(document))


def _index_verdict(document: Mapping[str, Any]) -> ManifestVerdict:
    artifact = document.get("artifactType")
    if isinstance(artifact, str) and artifact:
        return NotDeployable(f"an OCI artifact index ({artifact}), not an image")
    entries = document.get("manifests")
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return NotDeployable("the index lists no manifests")
    images = tuple(
        str(entry["digest"])
        for entry in entries
        if isinstance(entry, Mapping) and _is_image_entry(entry)
    )
    if not images:
        return NotDeployable("the index holds no image manifests")
    return Deployable(kind="index", platform_manifests=images)


def _is_image_entry(entry: Mapping[str, Any]) -> bool:
    annotations = entry.get("annotations")
    # BuildKit stores provenance/SBOM attestations as image manifests inside the index.
    if isinstance(annotations, Mapping) and annotations.get("vnd.docker.reference.type"):
        return False
    media_type = entry.get("mediaType")
    return (
        isinstance(media_type, str)
        and _base(media_type) in IMAGE_MANIFESTS
        and not entry.get("artifactType")
        and isinstance(entry.get("digest"), str)
    )


def _image_size(document: Mapping[str, Any]) -> int | None:
    parts = [document.get("config")]
    layers = document.get("layers")
    if isinstance(layers, Sequence) and not isinstance(layers, str):
        parts.extend(layers)
    total = 0
    for part in parts:
        size = part.get("size") if isinstance(part, Mapping) else None
        if isinstance(size, bool) or not isinstance(size, int):
            return None
        total += size
    return total


def _base(media_type: str) -> str:
    # Content-Type may carry parameters ("...; charset=utf-8").
    return media_type.split(";", 1)[0].strip().lower()


def _load(manifest: Mapping[str, Any] | bytes | str) -> Mapping[str, Any] | None:
    if isinstance(manifest, Mapping):
        return manifest
    try:
        loaded = json.loads(manifest)
    except (ValueError, UnicodeDecodeError):
        return None
    return loaded if isinstance(loaded, Mapping) else None
