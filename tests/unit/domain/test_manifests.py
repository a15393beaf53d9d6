"""Deployable means an image manifest with an image config, or an index of such; never a
signature, attestation, SBOM or other referrer. And which platform an image runs."""

from __future__ import annotations

import json

import pytest

from shared.domain.manifests import (
    ATTESTATION_LAYER_MEDIA_TYPES,
    COSIGN_SIMPLESIGNING,
    DOCKER_IMAGE_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    HELM_CONFIG,
    IMAGE_CONFIGS,
    MANAGED_ONLINE_ENDPOINT_PLATFORM,
    NOTARY_SIGNATURE,
    OCI_IMAGE_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    SBOM_LAYER_MEDIA_TYPES,
    SIGNATURE_LAYER_MEDIA_TYPES,
    SUPPLY_CHAIN_LAYER_MEDIA_TYPES,
    Deployable,
    NotDeployable,
    ReadChild,
    ReadConfig,
    classify_media_types,
    inspect_manifest,
    is_deployable_manifest,
    is_manifest_media_type,
    judge_config,
    judge_platform_manifest,
    pick_platform,
    platform_of_config,
    supply_chain_kind,
)

D = "sha256:" + "c" * 64


def image(config_type: str = OCI_IMAGE_CONFIG, **extra: object) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": D, "size": 100},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 1000},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 2000},
        ],
        **extra,
    }


def test_oci_and_docker_images_are_deployable_with_size() -> None:
    assert is_deployable_manifest(image()) == Deployable(kind="image", image_size_bytes=3100)
    docker = image(DOCKER_IMAGE_CONFIG, mediaType=DOCKER_MANIFEST)
    assert is_deployable_manifest(json.dumps(docker)) == Deployable(
        kind="image", image_size_bytes=3100
    )
    assert isinstance(is_deployable_manifest(json.dumps(docker).encode()), Deployable)


def test_media_type_from_content_type_when_manifest_omits_it() -> None:
    body = image()
    del body["mediaType"]
    assert isinstance(
        is_deployable_manifest(body, "application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        Deployable,
    )
    assert isinstance(is_deployable_manifest(body), Deployable)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (image(HELM_CONFIG), "Helm chart"),
        (image("application/vnd.cncf.notary.signature"), "signature, SBOM"),
        (
            image("application/vnd.oci.empty.v1+json", artifactType="application/spdx+json"),
            "OCI artifact",
        ),
        ({"schemaVersion": 1, "name": "x"}, "schema 1"),
        (b"not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, "no image manifests"),
        (
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "artifactType": "application/x",
                "manifests": [],
            },
            "artifact index",
        ),
    ],
)
def test_not_deployable(manifest: object, reason: str) -> None:
    verdict = is_deployable_manifest(manifest)  # type: ignore[arg-type]
    assert isinstance(verdict, NotDeployable)
    assert reason in verdict.reason


def test_index_of_images_skips_attestations() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "1" * 64,
                "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "2" * 64,
                "size": 1,
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "3" * 64,
                "size": 1,
                "artifactType": "application/vnd.dev.sigstore.bundle+json",
            },
        ],
    }
    assert is_deployable_manifest(index) == Deployable(
        kind="index", platform_manifests=("sha256:" + "1" * 64,)
    )


def test_media_type_helpers() -> None:
    assert is_manifest_media_type(OCI_MANIFEST)
    assert is_manifest_media_type("application/vnd.docker.distribution.manifest.list.v2+json")
    assert not is_manifest_media_type("application/octet-stream")
    assert isinstance(classify_media_types(OCI_MANIFEST, OCI_IMAGE_CONFIG), Deployable)
    assert isinstance(classify_media_types("application/vnd.acr.helm.chart", None), NotDeployable)
    assert isinstance(
        classify_media_types(OCI_MANIFEST, OCI_IMAGE_CONFIG, "application/x"), NotDeployable
    )


# --- signatures, attestations, SBOMs and other referrers -------------------------------

SIGNED = "sha256:" + "5" * 64
EMPTY_CONFIG = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}


def cosign_manifest(layers: list[dict[str, object]]) -> dict[str, object]:
    """cosign's tag-based layout (sha256-<hex>.sig/.att/.sbom): the ordinary image config,
    the payloads as layers (sigstore/cosign specs/SIGNATURE_SPEC.md, ATTESTATION_SPEC.md,
    SBOM_SPEC.md)."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_IMAGE_CONFIG,
            "size": 233,
            "digest": "sha256:83bd5fb5b39f65f28e50a86d48fa79c07880befc292d92eebdc18531054b070c",
        },
        "layers": layers,
    }


COSIGN_SIGNATURE = cosign_manifest(
    [
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": 248,
            "digest": "sha256:1119abab63e605dcc281019bad0424744178b6f61ba57378701fe7391994c999",
            "annotations": {
                "dev.cosignproject.cosign/signature": "MEUCIBKI9FIC+YD3m/lWViyPxsJsbnIHj86s",
                "dev.sigstore.cosign/bundle": '{"SignedEntryTimestamp":"MEUCIQDH"}',
                "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nMIIC",
            },
        }
    ]
)
COSIGN_ATTESTATION = cosign_manifest(
    [
        {
            "mediaType": "application/vnd.dsse.envelope.v1+json",
            "size": 10412,
            "digest": "sha256:ed3ad03d3b87843b5419d7dce9d50a3e0f45554b2ba93bf378611cae6b450cff",
            "annotations": {
                "dev.cosignproject.cosign/signature": "",
                "predicateType": "https://slsa.dev/provenance/v1",
            },
        }
    ]
)
COSIGN_SBOM = cosign_manifest(
    [
        {"mediaType": "text/spdx+json", "size": 246, "digest": "sha256:" + "e" * 64},
        {
            "mediaType": "application/vnd.cyclonedx+json",
            "size": 462,
            "digest": "sha256:" + "f" * 64,
        },
    ]
)
# notaryproject/specifications specs/signature-specification.md ("Storage"), and the OCI 1.1
# form Notation writes with the referrers API (artifactType, empty config).
NOTATION_SIGNATURE = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "artifactType": "application/vnd.cncf.notary.signature",
    "config": EMPTY_CONFIG,
    "layers": [
        {
            "mediaType": "application/jose+json",
            "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
            "size": 32654,
        }
    ],
    "subject": {"mediaType": OCI_MANIFEST, "digest": SIGNED, "size": 16724},
    "annotations": {
        "io.cncf.notary.x509chain.thumbprint#S256": '["B7A69A70992AE4F9FF103EBE04A2C3BA"]',
        "org.opencontainers.image.created": "2024-03-15T12:00:00Z",
    },
}
NOTATION_V1_SIGNATURE = {
    **{k: v for k, v in NOTATION_SIGNATURE.items() if k != "artifactType"},
    "config": {**EMPTY_CONFIG, "mediaType": "application/vnd.cncf.notary.signature"},
}
# `oras attach --artifact-type application/spdx+json <image> sbom.spdx.json:application/spdx+json`
ORAS_SBOM = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "artifactType": "application/spdx+json",
    "config": EMPTY_CONFIG,
    "layers": [
        {
            "mediaType": "application/spdx+json",
            "digest": "sha256:" + "a" * 64,
            "size": 5120,
            "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"},
        }
    ],
    "subject": {"mediaType": OCI_MANIFEST, "digest": SIGNED, "size": 1234},
    "annotations": {"org.opencontainers.image.created": "2024-03-15T12:00:00Z"},
}


@pytest.mark.parametrize(
    ("manifest", "fragments"),
    [
        (
            COSIGN_SIGNATURE,
            ["application/vnd.dev.cosign.simplesigning.v1+json", "a signature", "not an image"],
        ),
        (COSIGN_ATTESTATION, ["application/vnd.dsse.envelope.v1+json", "an attestation"]),
        (COSIGN_SBOM, ["text/spdx+json", "an SBOM"]),
        (
            NOTATION_SIGNATURE,
            ["OCI referrer", SIGNED, "application/vnd.cncf.notary.signature"],
        ),
        (NOTATION_V1_SIGNATURE, ["OCI referrer", "application/vnd.cncf.notary.signature"]),
        (ORAS_SBOM, ["OCI referrer", SIGNED, "application/spdx+json"]),
    ],
    ids=["cosign-sig", "cosign-att", "cosign-sbom", "notation", "notation-v1.0", "oras-sbom"],
)
def test_signatures_attestations_and_sboms_are_not_deployable(
    manifest: dict[str, object], fragments: list[str]
) -> None:
    verdict = is_deployable_manifest(json.dumps(manifest).encode(), OCI_MANIFEST)
    assert isinstance(verdict, NotDeployable), verdict
    for fragment in fragments:
        assert fragment in verdict.reason


@pytest.mark.parametrize("layer_type", sorted(SUPPLY_CHAIN_LAYER_MEDIA_TYPES))
def test_any_supply_chain_layer_makes_an_image_config_manifest_not_deployable(
    layer_type: str,
) -> None:
    manifest = image()
    manifest["layers"] = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 9},
        {"mediaType": layer_type + "; charset=utf-8", "digest": D, "size": 9},
    ]
    verdict = is_deployable_manifest(manifest)
    assert isinstance(verdict, NotDeployable)
    assert layer_type in verdict.reason
    assert supply_chain_kind(layer_type.upper()) is not None


def test_a_subject_makes_any_manifest_a_referrer_even_an_image_or_index() -> None:
    attached = image(subject={"mediaType": OCI_MANIFEST, "digest": SIGNED, "size": 10})
    verdict = is_deployable_manifest(attached)
    assert isinstance(verdict, NotDeployable) and "OCI referrer of " + SIGNED in verdict.reason
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": {}}
    verdict = is_deployable_manifest(index)
    assert isinstance(verdict, NotDeployable) and "OCI referrer" in verdict.reason


def test_media_type_sets_hold_the_documented_types() -> None:
    assert COSIGN_SIMPLESIGNING in SIGNATURE_LAYER_MEDIA_TYPES
    assert {"application/jose+json", "application/cose"} <= SIGNATURE_LAYER_MEDIA_TYPES
    assert "application/vnd.dsse.envelope.v1+json" in ATTESTATION_LAYER_MEDIA_TYPES
    assert {"text/spdx", "application/vnd.cyclonedx"} <= SBOM_LAYER_MEDIA_TYPES
    assert NOTARY_SIGNATURE not in IMAGE_CONFIGS
    # Ordinary image layers are none of these.
    for layer in (
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ):
        assert supply_chain_kind(layer) is None


# --- platforms -----------------------------------------------------------------------------


def config_blob(**platform: str) -> dict[str, object]:
    """An image config blob as BuildKit writes it (OCI image-spec config.md)."""
    return {
        "created": "2024-03-15T12:00:00Z",
        **platform,
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin"], "Cmd": ["python", "serve.py"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "7" * 64]},
        "history": [{"created_by": "COPY . /app"}],
    }


def test_platform_of_config() -> None:
    assert platform_of_config(config_blob(architecture="amd64", os="linux")) == (
        "linux",
        "amd64",
        None,
    )
    assert platform_of_config(config_blob(architecture="arm64", os="linux", variant="v8")) == (
        "linux",
        "arm64",
        "v8",
    )
    # Some builders write the kernel's name; OCI (and containerd) say amd64.
    assert platform_of_config(config_blob(architecture="x86_64", os="Linux"))[:2] == (
        "linux",
        "amd64",
    )
    with pytest.raises(ValueError, match="no architecture"):
        platform_of_config(config_blob(os="linux"))
    with pytest.raises(ValueError, match="no os"):
        platform_of_config(config_blob(architecture="amd64"))


AMD64 = "sha256:" + "a1" * 32
ARM64 = "sha256:" + "b2" * 32
AMD64_V3 = "sha256:" + "c3" * 32


def platform_entry(digest: str, **platform: str) -> dict[str, object]:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1000, "platform": platform}


def attestation_entry(digest: str, describes: str) -> dict[str, object]:
    """BuildKit's provenance/SBOM attestation manifest inside a buildx index."""
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": 840,
        "annotations": {
            "vnd.docker.reference.digest": describes,
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


BUILDX_INDEX = {
    "schemaVersion": 2,
    "mediaType": OCI_INDEX,
    "manifests": [
        platform_entry(ARM64, architecture="arm64", os="linux"),
        platform_entry(AMD64, architecture="amd64", os="linux"),
        attestation_entry("sha256:" + "d4" * 32, ARM64),
        attestation_entry("sha256:" + "e5" * 32, AMD64),
    ],
}


def test_pick_platform_finds_the_amd64_image_of_a_buildx_index() -> None:
    assert MANAGED_ONLINE_ENDPOINT_PLATFORM == ("linux", "amd64")
    assert pick_platform(BUILDX_INDEX) == AMD64
    assert pick_platform(json.dumps(BUILDX_INDEX).encode()) == AMD64
    assert pick_platform(BUILDX_INDEX, ("linux", "arm64")) == ARM64
    assert pick_platform(BUILDX_INDEX, ("windows", "amd64")) is None


def test_pick_platform_without_amd64_is_none() -> None:
    arm_only = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            platform_entry(ARM64, architecture="arm64", os="linux", variant="v8"),
            attestation_entry("sha256:" + "d4" * 32, ARM64),
        ],
    }
    assert pick_platform(arm_only) is None
    # An attestation that claims linux/amd64 is still not an image.
    lying = attestation_entry("sha256:" + "e5" * 32, ARM64)
    lying["platform"] = {"architecture": "amd64", "os": "linux"}
    arm_only["manifests"].append(lying)  # type: ignore[attr-defined]
    assert pick_platform(arm_only) is None
    assert pick_platform({"schemaVersion": 2, "manifests": "nope"}) is None
    assert pick_platform(b"not json") is None


def test_pick_platform_prefers_the_baseline_amd64_over_a_microarchitecture_level() -> None:
    level_v3 = platform_entry(AMD64_V3, architecture="amd64", os="linux", variant="v3")
    baseline = {**platform_entry(AMD64, architecture="amd64", os="linux")}
    baseline["mediaType"] = DOCKER_MANIFEST

    def manifest_list(*entries: dict[str, object]) -> dict[str, object]:
        return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": entries}

    assert pick_platform(manifest_list(level_v3, baseline)) == AMD64
    assert pick_platform(manifest_list(level_v3)) == AMD64_V3


# --- one read at a time: what to read next, and the verdict ------------------------------


def test_a_single_image_is_judged_by_its_config_blob() -> None:
    first = inspect_manifest(image(), OCI_MANIFEST)
    assert first == ReadConfig(D, 3100)
    amd64 = judge_config(config_blob(os="linux", architecture="amd64"), first.image_size_bytes)
    assert amd64 == Deployable(kind="image", image_size_bytes=3100)
    arm64 = judge_config(config_blob(os="linux", architecture="arm64"), 3100)
    assert isinstance(arm64, NotDeployable)
    assert "linux/arm64" in arm64.reason and "run linux/amd64" in arm64.reason
    unknown = judge_config(config_blob(), 3100)
    assert isinstance(unknown, NotDeployable) and "does not say its platform" in unknown.reason


def test_an_index_is_judged_by_its_amd64_manifest_and_owns_every_platform() -> None:
    amd, arm, att = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "e" * 64
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            platform_entry(arm, os="linux", architecture="arm64"),
            platform_entry(amd, os="linux", architecture="amd64"),
            attestation_entry(att, amd),
        ],
    }
    first = inspect_manifest(index, OCI_INDEX)
    assert first == ReadChild(amd, (arm, amd))
    assert judge_platform_manifest(image(), OCI_MANIFEST) == Deployable(
        kind="image", image_size_bytes=3100
    )
    signature = judge_platform_manifest(image(artifactType=NOTARY_SIGNATURE), OCI_MANIFEST)
    assert isinstance(signature, NotDeployable)
    assert signature.reason.startswith("its linux/amd64 manifest: ")


def test_an_index_without_amd64_or_a_manifest_without_config_is_refused_at_once() -> None:
    arm_only = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [platform_entry("sha256:" + "b" * 64, os="linux", architecture="arm64")],
    }
    refused = inspect_manifest(arm_only, OCI_INDEX)
    assert isinstance(refused, NotDeployable) and "no linux/amd64 image" in refused.reason
    no_config = image()
    no_config["config"] = {"mediaType": OCI_IMAGE_CONFIG, "size": 2}
    refused = inspect_manifest(no_config, OCI_MANIFEST)
    assert refused == NotDeployable("the manifest names no config")
