"""The pooled transport against a real proxy on loopback: a proxy named in the environment
carries the clients' requests (the rest of the suite runs with none named: straight to the
service)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from devenv.config import LocalEnv
from shared.adapters.table_store import RolloutStore
from tests.integration.test_table_store import unique_table

pytestmark = pytest.mark.integration


@asynccontextmanager
async def refusing_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP proxy on loopback that records each request line and answers 502."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await reader.readline()).decode().strip())
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def test_a_proxy_named_in_the_environment_carries_the_requests(
    azurite: LocalEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> list[str]:
        async with refusing_proxy() as (url, seen):
            monkeypatch.setenv("HTTP_PROXY", url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            async with RolloutStore.from_connection_string(
                azurite.table_connection_string, unique_table()
            ) as store:
                with pytest.raises((HttpResponseError, ServiceResponseError)):
                    await store._table.create_table()
            return seen

    seen = asyncio.run(scenario())
    assert seen and seen[0].startswith("POST http://127.0.0.1:"), seen
