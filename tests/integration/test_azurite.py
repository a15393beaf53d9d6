"""Azurite as the local environment runs it: what was written before a stop is there after a restart."""

from __future__ import annotations

from pathlib import Path

from azure.data.tables import TableServiceClient

from devenv.azurite import start_azurite
from devenv.config import isolated_env


def test_writes_survive_a_stop_and_restart(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    process = start_azurite(env)
    try:
        service = TableServiceClient.from_connection_string(env.table_connection_string)
        table = service.create_table_if_not_exists("persisted")
        table.create_entity(
            {"PartitionKey": "p", "RowKey": "r", "Value": "written just before the stop"}
        )
    finally:
        # Immediately after the write: Azurite only saves on a clean shutdown (or every few seconds).
        process.stop()
    assert process.exit_code() is not None

    process = start_azurite(env)
    try:
        service = TableServiceClient.from_connection_string(env.table_connection_string)
        entity = service.get_table_client("persisted").get_entity("p", "r")
        assert entity["Value"] == "written just before the stop"
    finally:
        process.stop()
