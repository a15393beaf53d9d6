"""The start-up report: every configuration problem is logged, and nothing raises."""

from __future__ import annotations

import logging
import os

import pytest

from shared.entrypoints.startup import report_configuration


def test_a_misconfiguration_is_reported_line_by_line_without_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [n for n in os.environ if n.startswith("GEOROLLOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GEOROLLOUT_REGIONS", "eastus,eastus")
    with caplog.at_level(logging.ERROR, logger="georollout.startup"):
        assert report_configuration() is False
    text = caplog.text
    assert "misconfigured" in text
    assert "GEOROLLOUT_REGISTRY_LOGIN_SERVER" in text
    assert "GEOROLLOUT_REGIONS" in text
    assert len(caplog.records) >= 3
