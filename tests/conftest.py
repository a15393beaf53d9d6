"""Fixtures shared by every layer: the local CA and a per-session environment on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.azurite import start_azurite
from devenv.config import LocalEnv, isolated_env
from devenv.tls import TlsFiles, ensure_tls


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> LocalEnv:
    """A whole local environment's addresses on free ports (nothing started)."""
    return isolated_env(tmp_path_factory.mktemp("georollout"))


@pytest.fixture(scope="session")
def azurite(local_env: LocalEnv) -> Iterator[LocalEnv]:
    process = start_azurite(local_env)
    yield local_env
    process.stop()


def pytest_configure(config: pytest.Config) -> None:
    Path(config.rootpath, ".georollout").mkdir(exist_ok=True)
