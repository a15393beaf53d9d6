"""Lints the azd post-deploy hook with shellcheck and checks azure.yaml runs it."""

from __future__ import annotations

import shutil
import subprocess

from tests.infra.templates import INFRA_DIR

HOOK = INFRA_DIR / "hooks" / "postdeploy.sh"


def test_postdeploy_hook_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run `make setup`"
    completed = subprocess.run(
        [shellcheck, "--severity=style", "--external-sources", str(HOOK)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_postdeploy_hook_is_strict_and_wired_into_azd() -> None:
    text = HOOK.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    azure_yaml = (INFRA_DIR.parent / "azure.yaml").read_text()
    assert "postdeploy:" in azure_yaml and "infra/hooks/postdeploy.sh" in azure_yaml
