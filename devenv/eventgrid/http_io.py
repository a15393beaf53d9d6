"""Request-body reading with Event Grid's size limit, and Event Grid's JSON error shape."""

from __future__ import annotations

from aiohttp import web

MAX_REQUEST_BYTES = 1024 * 1024  # Event Grid's limit for one publish request


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def read_body_within(request: web.Request, limit: int = MAX_REQUEST_BYTES) -> bytes | None:
    """The body, or None when it is over `limit` (drained, so the client reads our answer, not a reset)."""
    declared = request.content_length
    chunks: list[bytes] = []
    size = 0
    over = declared is not None and declared > limit
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            over = True
        if not over:
            chunks.append(chunk)
    return None if over else b"".join(chunks)
