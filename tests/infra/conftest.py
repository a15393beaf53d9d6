"""Parses infra/'s Bicep templates once per test session."""

from __future__ import annotations

import pytest

from tests.infra.templates import Templates, load_templates


@pytest.fixture(scope="session")
def templates() -> Templates:
    return load_templates()
