"""`make up`'s local.settings.json: written when absent or unedited, kept (and explained) when
edited by hand or a developer's own, never silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

from devenv.__main__ import settings_file_note
from devenv.local_settings import SettingsFile, write_local_settings

GENERATED = {
    "GEOROLLOUT_REGIONS": "eastus,westus",
    "GEOROLLOUT_DEPLOY_POLL_SECONDS": "1",
}


def test_an_absent_or_unedited_file_is_written_again(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    assert write_local_settings(path, GENERATED) == (SettingsFile.WRITTEN, [])
    newer = GENERATED | {"GEOROLLOUT_DEPLOY_POLL_SECONDS": "2"}  # a newer version's default
    assert write_local_settings(path, newer) == (SettingsFile.WRITTEN, [])
    assert json.loads(path.read_text())["Values"] == newer


def test_a_generated_file_edited_by_hand_is_kept_and_the_edits_named(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    write_local_settings(path, GENERATED)
    document = json.loads(path.read_text())
    document["Values"]["GEOROLLOUT_DEPLOY_POLL_SECONDS"] = "7"
    document["Values"]["GEOROLLOUT_TARGETS"] = "[]"
    path.write_text(json.dumps(document))
    outcome, edited = write_local_settings(path, GENERATED)
    assert (outcome, edited) == (
        SettingsFile.EDITED,
        ["GEOROLLOUT_DEPLOY_POLL_SECONDS", "GEOROLLOUT_TARGETS"],
    )
    assert json.loads(path.read_text()) == document  # not a byte dropped
    note = settings_file_note(path.name, outcome, edited, GENERATED)
    assert "GEOROLLOUT_TARGETS apply" in note
    assert "GEOROLLOUT_DEPLOY_POLL_SECONDS do not" in note
    assert "make up's environment" in note and "delete local.settings.json" in note


def test_a_developers_own_file_is_never_touched(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    own = '{"IsEncrypted": false, "Values": {"GEOROLLOUT_TABLE_ENDPOINT": "https://x"}}'
    path.write_text(own)
    outcome, edited = write_local_settings(path, GENERATED)
    assert (outcome, edited, path.read_text()) == (SettingsFile.OWN, [], own)
    assert "kept your own" in settings_file_note(path.name, outcome, edited, GENERATED)
    path.write_text("not json")
    assert write_local_settings(path, GENERATED) == (SettingsFile.OWN, [])


def test_a_file_an_older_version_generated_is_written_again(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"GeneratedBy": "georollout make up", "Values": {"A": "1"}}))
    assert write_local_settings(path, GENERATED) == (SettingsFile.WRITTEN, [])
