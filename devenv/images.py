"""Small but real OCI artifacts (images, an index, a Helm-chart-like artifact) and pushing them.

Pushing goes through azure-containerregistry's ContainerRegistryClient, the same
client the product uses, against a local registry that trusts no one but the local CA.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from azure.containerregistry import ContainerRegistryClient

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class LayerFile:
    """A blob kept in a file (a large layer), read in chunks for its digest and its upload."""

    media_type: str
    path: Path

    @functools.cached_property
    def digest(self) -> str:
        sha = hashlib.sha256()
        with self.path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                sha.update(chunk)
        return "sha256:" + sha.hexdigest()

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageBlobs:
    """One OCI manifest with its config and layers, all as bytes (an image or any artifact)."""

    config: Blob
    layers: tuple[Blob | LayerFile, ...]
    manifest: bytes
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def total_bytes(self) -> int:
        return len(self.manifest) + self.config.size + sum(b.size for b in self.layers)

    @property
    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index over child manifests (a multi-platform image)."""

    children: tuple[ImageBlobs, ...]
    manifest: bytes
    media_type: str = OCI_INDEX

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def total_bytes(self) -> int:
        return len(self.manifest) + sum(child.total_bytes for child in self.children)


_CHUNK = 1 << 20


def _incompressible_chunks(size: int, seed: str) -> Iterator[bytes]:
    """`size` (at least 1) pseudo-random bytes from `seed`, a MiB at a time. SHAKE-256 output
    is pseudo-random, so gzip cannot shrink it: the layer's size on the wire is what the
    replication delay should be computed from."""
    size = max(size, 1)
    for number, start in enumerate(range(0, size, _CHUNK)):
        yield hashlib.shake_256(f"{seed}:{number}".encode()).digest(min(_CHUNK, size - start))


def _incompressible(size: int, seed: str) -> bytes:
    return b"".join(_incompressible_chunks(size, seed))


class _ChunkReader(io.RawIOBase):
    """A read-only stream over chunks (tarfile copies a member's content by `read(n)`); each
    chunk is sliced by offset, never copied whole again per read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk, self._offset = b"", 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            if self._offset >= len(self._chunk):
                self._chunk, self._offset = next(self._chunks, b""), 0
                if not self._chunk:
                    break
            end = len(self._chunk) if wanted is None else self._offset + wanted
            part = self._chunk[self._offset : end]
            self._offset += len(part)
            parts.append(part)
            if wanted is not None:
                wanted -= len(part)
        return b"".join(parts)


class _HashingWriter(io.RawIOBase):
    """Writes through to `target`, keeping the SHA-256 of what passed (the diff_id)."""

    def __init__(self, target: BinaryIO) -> None:
        self._target, self.sha256 = target, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha256.update(data)
        self._target.write(data)
        return len(data)


def _tar_layer(payload: bytes, name: str) -> tuple[bytes, bytes]:
    """A gzip'ed tar with one file; returns (compressed, uncompressed) for the diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=1, mtime=0), uncompressed


def _manifest(
    config: Blob, layers: tuple[Blob | LayerFile, ...], annotations: dict[str, str]
) -> bytes:
    return _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor,
            "layers": [layer.descriptor for layer in layers],
            "annotations": annotations,
        }
    )


def _image_config(seed: str, architecture: str, diff_id: str) -> Blob:
    return Blob(
        OCI_CONFIG,
        _canonical_json(
            {
                "architecture": architecture,
                "os": "linux",
                "config": {"Cmd": ["/bin/serve"], "Labels": {"georollout.seed": seed}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ),
    )


def build_image(*, size_bytes: int, seed: str, architecture: str = "amd64") -> ImageBlobs:
    """A real OCI image: one gzip'ed tar layer of about `size_bytes` random bytes, a config, a manifest."""
    compressed, uncompressed = _tar_layer(_incompressible(size_bytes, seed), "model/weights.bin")
    layer = Blob(OCI_LAYER_GZIP, compressed)
    config = _image_config(seed, architecture, sha256_digest(uncompressed))
    manifest = _manifest(config, (layer,), {"org.opencontainers.image.title": seed})
    return ImageBlobs(config=config, layers=(layer,), manifest=manifest)


@contextmanager
def built_image_file(
    *, size_bytes: int, seed: str, directory: Path, architecture: str = "amd64"
) -> Iterator[ImageBlobs]:
    """The same image as `build_image`, its layer written to a file in `directory` a MiB at a
    time (removed afterwards): memory stays flat whatever the size (`devenv push --size-mb`)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tar.gz") as spool:
        with gzip.GzipFile(fileobj=spool, mode="wb", compresslevel=1, mtime=0) as zipped:
            uncompressed = _HashingWriter(zipped)  # type: ignore[arg-type]
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo("model/weights.bin")
                info.size, info.mtime, info.mode = max(size_bytes, 1), 0, 0o644
                tar.addfile(info, _ChunkReader(_incompressible_chunks(size_bytes, seed)))
        spool.flush()
        layer = LayerFile(OCI_LAYER_GZIP, Path(spool.name))
        config = _image_config(seed, architecture, "sha256:" + uncompressed.sha256.hexdigest())
        manifest = _manifest(config, (layer,), {"org.opencontainers.image.title": seed})
        yield ImageBlobs(config=config, layers=(layer,), manifest=manifest)


def build_index(children: tuple[ImageBlobs, ...]) -> ImageIndex:
    """An OCI index over `children` (give each a different architecture)."""
    entries = []
    for child in children:
        platform = json.loads(child.config.data).get("architecture", "amd64")
        entries.append({**child.descriptor, "platform": {"architecture": platform, "os": "linux"}})
    manifest = _canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return ImageIndex(children=children, manifest=manifest)


def build_helm_chart(*, name: str, version: str, seed: str) -> ImageBlobs:
    """A Helm-3-chart-like OCI artifact: an ordinary OCI manifest whose config is not an image config."""
    compressed, _ = _tar_layer(_incompressible(2048, seed), f"{name}/Chart.yaml")
    layer = Blob(HELM_CHART_LAYER, compressed)
    config = Blob(
        HELM_CONFIG,
        _canonical_json({"apiVersion": "v2", "name": name, "version": version}),
    )
    manifest = _manifest(config, (layer,), {"org.opencontainers.image.title": name})
    return ImageBlobs(config=config, layers=(layer,), manifest=manifest)


def cosign_signature_tag(image_digest: str) -> str:
    """The tag cosign stores an image's signature under: `sha256-<hex>.sig`."""
    return image_digest.replace(":", "-") + ".sig"


def build_cosign_signature(image_digest: str, *, repository: str) -> ImageBlobs:
    """A signature laid out as cosign pushes it (sigstore/cosign specs/SIGNATURE_SPEC.md): an
    ordinary OCI manifest whose config is an *image* config and whose one layer is the
    simple-signing payload, with the signature in the layer's annotations."""
    payload = _canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )
    layer = Blob(COSIGN_SIMPLESIGNING, payload)
    config = Blob(
        OCI_CONFIG,
        _canonical_json(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(payload)]},
            }
        ),
    )
    manifest = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor,
            "layers": [
                {
                    **layer.descriptor,
                    "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
                }
            ],
        }
    )
    return ImageBlobs(config=config, layers=(layer,), manifest=manifest)


def registry_client(endpoint: str, *, ca_path: Path | str) -> ContainerRegistryClient:
    """An anonymous client for a local registry, trusting the local CA."""
    return ContainerRegistryClient(
        endpoint=endpoint,
        credential=None,
        audience="https://containerregistry.azure.net",
        connection_verify=str(ca_path),
    )


def _push_manifest(
    client: ContainerRegistryClient, repository: str, image: ImageBlobs, tag: str | None
) -> str:
    for blob in (image.config, *image.layers):
        if isinstance(blob, LayerFile):
            with blob.path.open("rb") as stream:  # uploaded in chunks by the SDK
                client.upload_blob(repository, stream)
        else:
            client.upload_blob(repository, io.BytesIO(blob.data))
    # A stream, not a dict: the SDK would re-serialise a dict and change the digest.
    digest: str = client.set_manifest(
        repository, io.BytesIO(image.manifest), tag=tag, media_type=image.media_type
    )
    return digest


def push_image(
    endpoint: str,
    repository: str,
    tag: str,
    image: ImageBlobs | ImageIndex,
    *,
    ca_path: Path | str,
) -> str:
    """Push `image` (blobs, then manifest; an index's children first, by digest) and tag it; return its digest."""
    with registry_client(endpoint, ca_path=ca_path) as client:
        if isinstance(image, ImageIndex):
            for child in image.children:
                _push_manifest(client, repository, child, None)
            digest: str = client.set_manifest(
                repository, io.BytesIO(image.manifest), tag=tag, media_type=image.media_type
            )
            return digest
        return _push_manifest(client, repository, image, tag)
