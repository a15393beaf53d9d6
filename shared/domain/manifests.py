"""Which manifests are deployable images: an image manifest with an image config, or an index of such.

The event's media type alone cannot tell: a Helm 3 chart, a signature or an
SBOM arrives as an ordinary push of an OCI manifest, told apart only by its
`subject`, its `artifactType`, its config media type or its layers' media
types. Also the platform knowledge needed to pick what Azure ML can run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

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

# Supply-chain artifacts stored as ordinary OCI image manifests: their config may be the
# ordinary image config, so only their layers' media types (or `subject`/`artifactType`)
# tell them apart from an image. Compared after parameters are stripped and lower-cased.
#
# Signatures:
# - cosign's payload layer (sigstore/cosign specs/SIGNATURE_SPEC.md, "Payload and
#   mediaType": config application/vnd.oci.image.config.v1+json, layer
#   application/vnd.dev.cosign.simplesigning.v1+json, tag sha256-<hex>.sig);
# - Sigstore bundles (cosign --new-bundle-format, OCI 1.1 referrers), versioned names;
# - Notary Project / Notation envelopes (notaryproject/specifications
#   specs/signature-specification.md, "Storage": config application/vnd.cncf.notary.signature,
#   one layer application/jose+json or application/cose, a `subject`).
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
SIGNATURE_LAYER_MEDIA_TYPES: Final = frozenset(
    {
        COSIGN_SIMPLESIGNING,
        "application/vnd.dev.sigstore.bundle+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/jose+json",
        "application/cose",
    }
)
# Attestations: cosign's `.att` manifests carry in-toto statements in DSSE envelopes
# (sigstore/cosign specs/ATTESTATION_SPEC.md: layer application/vnd.dsse.envelope.v1+json);
# BuildKit's provenance/SBOM attestation manifests carry application/vnd.in-toto+json layers.
ATTESTATION_LAYER_MEDIA_TYPES: Final = frozenset(
    {"application/vnd.dsse.envelope.v1+json", "application/vnd.in-toto+json"}
)
# SBOMs: cosign's `.sbom` manifests (sigstore/cosign specs/SBOM_SPEC.md, "MediaTypes":
# text/spdx and application/vnd.cyclonedx, with +json/+xml suffixes), SPDX's own
# application/spdx+json and Syft's native JSON, as pushed with `oras attach`.
SBOM_LAYER_MEDIA_TYPES: Final = frozenset(
    {
        "text/spdx",
        "text/spdx+json",
        "text/spdx+xml",
        "application/spdx+json",
        "application/vnd.cyclonedx",
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/vnd.syft+json",
    }
)
SUPPLY_CHAIN_LAYER_MEDIA_TYPES: Final = (
    SIGNATURE_LAYER_MEDIA_TYPES | ATTESTATION_LAYER_MEDIA_TYPES | SBOM_LAYER_MEDIA_TYPES
)

# The platform Azure ML managed online endpoints run: every VM size they accept is
# x86-64 (learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list
# lists only D/E/F/L/NC/ND/NV sizes, none of the Arm-based "p" sizes), and the
# deployment runs the Linux container it is given.
MANAGED_ONLINE_ENDPOINT_PLATFORM: Final = ("linux", "amd64")
# Architecture spellings some builders write, as OCI/Go names (what containerd normalises).
_ARCHITECTURE_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


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
    manifest_media_type: str,
    config_media_type: str | None,
    artifact_type: str | None = None,
    layer_media_types: Sequence[str] = (),
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
        return NotDeployable(
            f"an OCI artifact or referrer (artifactType {artifact_type}), not an image"
        )
    if config_media_type == HELM_CONFIG:
        return NotDeployable("a Helm chart, not an image")
    if config_media_type not in IMAGE_CONFIGS:
        return NotDeployable(
            f"config media type {config_media_type} is not an image config "
            "(a signature, SBOM or other artifact)"
        )
    for layer_media_type in layer_media_types:
        kind = supply_chain_kind(layer_media_type)
        if kind is not None:
            return NotDeployable(
                f"layer media type {_base(layer_media_type)} makes it {kind}, not an image"
            )
    return Deployable(kind="image")


def supply_chain_kind(media_type: str) -> str | None:
    """What a blob of `media_type` is when it is a signature, attestation or SBOM, else None."""
    base = _base(media_type)
    if base in SIGNATURE_LAYER_MEDIA_TYPES:
        return "a signature"
    if base in ATTESTATION_LAYER_MEDIA_TYPES:
        return "an attestation"
    if base in SBOM_LAYER_MEDIA_TYPES:
        return "an SBOM"
    return None


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
    referrer = _referrer_verdict(document)
    if referrer is not None:
        return referrer
    if declared in INDEXES:
        return _index_verdict(document)
    config = document.get("config")
    config_type = config.get("mediaType") if isinstance(config, Mapping) else None
    artifact = document.get("artifactType")
    verdict = classify_media_types(
        declared,
        config_type if isinstance(config_type, str) else None,
        artifact if isinstance(artifact, str) else None,
        _layer_media_types(document),
    )
    if isinstance(verdict, NotDeployable):
        return verdict
    return Deployable(kind="image", image_size_bytes=_image_size(document))


def _referrer_verdict(document: Mapping[str, Any]) -> NotDeployable | None:
    # OCI image-spec v1.1 (manifest.md, "subject"): a manifest with a `subject` refers to
    # another manifest; that is how signatures, attestations and SBOMs are attached.
    subject = document.get("subject")
    if subject is None:
        return None
    digest = subject.get("digest") if isinstance(subject, Mapping) else None
    of = f" of {digest}" if isinstance(digest, str) else ""
    artifact = document.get("artifactType")
    config = document.get("config")
    config_type = config.get("mediaType") if isinstance(config, Mapping) else None
    described = artifact if isinstance(artifact, str) and artifact else config_type
    what = f" ({described})" if isinstance(described, str) and described else ""
    return NotDeployable(
        f"an OCI referrer{of}{what}: a signature, attestation or SBOM attached to another "
        "manifest, not an image"
    )


def _layer_media_types(document: Mapping[str, Any]) -> tuple[str, ...]:
    layers = document.get("layers")
    if not isinstance(layers, Sequence) or isinstance(layers, str):
        return ()
    found = (layer.get("mediaType") if isinstance(layer, Mapping) else None for layer in layers)
    return tuple(media_type for media_type in found if isinstance(media_type, str))


def platform_of_config(config: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(os, architecture, variant or None) of an image config blob, lower-cased, with the
    architecture spelled as OCI does (`x86_64` -> `amd64`); ValueError when os or
    architecture is missing (OCI image-spec config.md requires both)."""
    return _platform(config, "image config")


def pick_platform(
    index: Mapping[str, Any] | bytes | str,
    want: tuple[str, str] = MANAGED_ONLINE_ENDPOINT_PLATFORM,
) -> str | None:
    """The digest of the index entry for platform `want` (os, architecture), or None.

    Attestation entries are skipped as `_is_image_entry` does. Among several matches
    (`linux/amd64` and `linux/amd64/v3`, say) the one without a variant wins: a
    microarchitecture level needs CPU features the baseline does not promise.
    """
    document = _load(index)
    entries = document.get("manifests") if document is not None else None
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return None
    want_os, want_architecture = want[0].lower(), _architecture(want[1])
    matches: list[tuple[str | None, str]] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not _is_image_entry(entry):
            continue
        platform = entry.get("platform")
        if not isinstance(platform, Mapping):
            continue
        try:
            os_name, architecture, variant = _platform(platform, "platform")
        except ValueError:
            continue
        if (os_name, architecture) == (want_os, want_architecture):
            matches.append((variant, str(entry["digest"])))
    baseline = [digest for variant, digest in matches if variant in (None, "v1")]
    if baseline:
        return baseline[0]
    return matches[0][1] if matches else None


def _platform(document: Mapping[str, Any], what: str) -> tuple[str, str, str | None]:
    os_name = document.get("os")
    architecture = document.get("architecture")
    if not isinstance(os_name, str) or not os_name:
        raise ValueError(f"the {what} names no os")
    if not isinstance(architecture, str) or not architecture:
        raise ValueError(f"the {what} names no architecture")
    variant = document.get("variant")
    return (
        os_name.lower(),
        _architecture(architecture),
        variant.lower() if isinstance(variant, str) and variant else None,
    )


def _architecture(name: str) -> str:
    lowered = name.lower()
    return _ARCHITECTURE_ALIASES.get(lowered, lowered)


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


# --- inspecting a pushed manifest, one registry read at a time ----------------------------


@dataclass(frozen=True, slots=True)
class ReadChild:
    """An index: read its `digest` manifest (the platform Azure ML runs) to judge it.
    `parts` are every platform manifest of the index: none is a rollout of its own."""

    digest: str
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """A single image: read its config blob `digest` to learn its platform."""

    digest: str
    image_size_bytes: int | None


_WANT = "/".join(MANAGED_ONLINE_ENDPOINT_PLATFORM)


def inspect_manifest(
    manifest: Mapping[str, Any], media_type: str | None
) -> NotDeployable | ReadChild | ReadConfig:
    """The first judgement of a pushed manifest: not deployable (with the reason), or the
    one more read that decides (an index's platform manifest, an image's config)."""
    verdict = is_deployable_manifest(manifest, media_type)
    if isinstance(verdict, NotDeployable):
        return verdict
    if verdict.kind == "index":
        child = pick_platform(manifest)
        if child is None:
            return NotDeployable(
                f"the multi-platform image has no {_WANT} image: Azure ML online endpoints "
                f"run {_WANT}"
            )
        return ReadChild(child, verdict.platform_manifests)
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, Mapping) else None
    if not isinstance(digest, str):
        return NotDeployable("the manifest names no config")
    return ReadConfig(digest, verdict.image_size_bytes)


def judge_platform_manifest(manifest: Mapping[str, Any], media_type: str | None) -> ManifestVerdict:
    """An index's platform manifest (its platform already matched in the index)."""
    verdict = is_deployable_manifest(manifest, media_type)
    if isinstance(verdict, NotDeployable):
        return NotDeployable(f"its {_WANT} manifest: {verdict.reason}")
    return verdict


def judge_config(config: Mapping[str, Any], image_size_bytes: int | None) -> ManifestVerdict:
    """A single image, by its config blob: deployable only for the endpoints' platform."""
    try:
        os_name, architecture, _ = platform_of_config(config)
    except ValueError as error:
        return NotDeployable(f"the image config does not say its platform: {error}")
    if (os_name, architecture) != MANAGED_ONLINE_ENDPOINT_PLATFORM:
        return NotDeployable(
            f"the image is built for {os_name}/{architecture}; Azure ML online endpoints "
            f"run {_WANT}"
        )
    return Deployable(kind="image", image_size_bytes=image_size_bytes)
