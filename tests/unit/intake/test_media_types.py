"""Deployable means an image manifest with an image config, or an index of such."""

from __future__ import annotations

import json

import pytest

from shared.intake.media_types import (
    DOCKER_IMAGE_CONFIG,
    DOCKER_MANIFEST,
    HELM_CONFIG,
    OCI_IMAGE_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Deployable,
    NotDeployable,
    classify_media_types,
    is_deployable_manifest,
    is_manifest_media_type,
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
