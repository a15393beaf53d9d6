"""Fixtures shared by the ARM emulator's test modules: real per-region registries, the emulator, an image.

Module-scoped, so each test module gets its own emulator and state (a knob one module turns never
leaks into another's counts).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.ai.ml import MLClient
from azure.containerregistry import ContainerRegistryClient
from azure.core.credentials import AccessToken

from devenv.arm.cloud import LOCAL_CLOUD_NAME, cloud_metadata
from devenv.arm.config import DEFAULT_ENDPOINT_SETTLE_S
from devenv.arm.launcher import start_arm_emulator
from devenv.config import (
    LOCAL_RESOURCE_GROUP,
    LOCAL_SUBSCRIPTION,
    LocalEnv,
    RegionEnv,
    isolated_env,
)
from devenv.process import ManagedProcess
from devenv.tls import TlsFiles

REPOSITORY = "models/tiny"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class FixedTokenCredential:
    """The one stand-in: no local AAD exists, and the emulator accepts any bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-test-token", int(time.time()) + 3600)


def serve_registry(region: RegionEnv, tls: TlsFiles, root: Path) -> ManagedProcess:
    """A real Distribution registry for one region, HTTPS with the local CA, relative URLs."""
    config = root / f"registry-{region.name}.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / f"data-{region.name}")}},
                "http": {
                    "addr": region.registry_host,
                    "relativeurls": True,
                    "tls": {"certificate": str(tls.cert_pem), "key": str(tls.key_pem)},
                },
            }
        )
    )
    process = ManagedProcess(
        name=f"registry-{region.name}",
        argv=["docker-registry", "serve", str(config)],
        log_path=root / f"registry-{region.name}.log",
    ).start()
    process.wait_for_port(region.registry_port)
    return process


def push_tiny_image(registry_url: str, ca: Path, payload: bytes) -> str:
    """Push one config blob, one layer and an OCI manifest; return the manifest digest."""
    with ContainerRegistryClient(registry_url, None, connection_verify=str(ca)) as client:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
        ).encode()
        config_digest, config_size = client.upload_blob(REPOSITORY, io.BytesIO(config))
        layer_digest, layer_size = client.upload_blob(REPOSITORY, io.BytesIO(payload))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
        return str(client.set_manifest(REPOSITORY, manifest, media_type=OCI_MANIFEST))


class Emulator:
    """The running emulator process, restartable on the same port and state directory."""

    def __init__(
        self, env: LocalEnv, tls: TlsFiles, *, endpoint_settle_s: float = DEFAULT_ENDPOINT_SETTLE_S
    ) -> None:
        self.env = env
        self.tls = tls
        self.endpoint_settle_s = endpoint_settle_s
        self.process = start_arm_emulator(env, tls, endpoint_settle_s=endpoint_settle_s)

    def restart(self) -> None:
        self.process.stop()
        self.process = start_arm_emulator(
            self.env, self.tls, endpoint_settle_s=self.endpoint_settle_s
        )

    def ml_client(self, region: str) -> MLClient:
        return MLClient(
            FixedTokenCredential(),
            LOCAL_SUBSCRIPTION,
            LOCAL_RESOURCE_GROUP,
            self.env.region(region).workspace_name,
            # One cloud name per emulator: MLClient keeps the first URL registered under a name.
            cloud=f"{LOCAL_CLOUD_NAME}-{self.env.arm_port}",
            cloud_metadata=cloud_metadata(self.env.arm_url),
            connection_verify=str(self.tls.ca_pem),
            enable_telemetry=False,
        )

    def arm(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, f"{self.env.arm_url}{path}", verify=str(self.tls.ca_pem), timeout=10, **kwargs
        )

    def audit(self) -> list[dict[str, Any]]:
        response = self.arm("GET", "/emulator/audit", headers={"Authorization": "Bearer any"})
        response.raise_for_status()
        return list(response.json()["records"])


@pytest.fixture(scope="module")
def arm_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    # eastus and westus get registries; westeurope's registry never runs (unreachable).
    env = isolated_env(tmp_path_factory.mktemp("arm"), ("eastus", "westus", "westeurope"))
    return replace(env, arm_provisioning_s=1.0)


@pytest.fixture(scope="module")
def registries(
    arm_env: LocalEnv, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    root = tmp_path_factory.mktemp("registries")
    started: list[ManagedProcess] = []
    try:
        for name in ("eastus", "westus"):
            started.append(serve_registry(arm_env.region(name), tls_files, root))
        yield
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def emulator(arm_env: LocalEnv, tls_files: TlsFiles, registries: None) -> Iterator[Emulator]:
    """The emulator as `make up` and the service tests run it: the default settle time."""
    running = Emulator(arm_env, tls_files)
    yield running
    running.process.stop()


@pytest.fixture(scope="module")
def digest(arm_env: LocalEnv, tls_files: TlsFiles, registries: None) -> str:
    """An image present in eastus's replica only (as just after a push, before replication)."""
    return push_tiny_image(
        arm_env.region("eastus").registry_url,
        tls_files.ca_pem,
        b"layer-" + str(time.time()).encode(),
    )
