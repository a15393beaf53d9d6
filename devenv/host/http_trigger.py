"""HTTP triggers: an aiohttp request in, through HttpRequestConverter, a response out.

The HTTP converter does not parse URLs, so query and route parameters are
supplied here, as the Functions host supplies them to the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie

from aiohttp import web
from azure.functions.meta import Datum
from multidict import CIMultiDict, MultiMapping

from devenv.host.invocation import FunctionInvoker, InvocationResult
from devenv.host.loader import IndexedFunction

# The Functions host refuses request bodies above about 100 MB (maxRequestBodySize).
MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


async def read_whole_body(
    request: web.Request, *, limit: int = MAX_REQUEST_BODY_BYTES
) -> bytes | None:
    """The request body, read to the end; None if it exceeds `limit` (still drained)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return None if size > limit else b"".join(chunks)


def _joined(values: MultiMapping[str], separator: str) -> dict[str, str]:
    # Repeated headers or query keys reach the function as one joined value.
    return {key: separator.join(values.getall(key)) for key in values}


def request_datum(request: web.Request, body: bytes, route_params: Mapping[str, str]) -> Datum:
    """The `http` Datum the worker would receive for this request."""
    headers = _joined(request.headers, ", ")
    query = _joined(request.query, ",")
    return Datum(
        type="http",
        value={
            "method": Datum(type="string", value=request.method),
            "url": Datum(type="string", value=str(request.url)),
            "headers": {name: Datum(type="string", value=value) for name, value in headers.items()},
            "query": {name: Datum(type="string", value=value) for name, value in query.items()},
            "params": {
                name: Datum(type="string", value=value) for name, value in route_params.items()
            },
            "body": Datum(type="bytes", value=body),
        },
    )


def _response_from_http_datum(datum: Datum) -> web.Response:
    value = datum.value
    headers: CIMultiDict[str] = CIMultiDict()
    for name, header in value["headers"].items():
        headers.add(name, str(header.value))
    for cookie in value.get("cookies") or []:
        assert isinstance(cookie, SimpleCookie)
        for morsel in cookie.values():
            headers.add("Set-Cookie", morsel.OutputString())
    body = value["body"].value if value.get("body") is not None else b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return web.Response(status=int(value["status_code"].value), body=body, headers=headers)


def response_from_output(datum: Datum | None) -> web.Response:
    """Turn the function's encoded http output into an aiohttp response."""
    if datum is None:
        return web.Response(status=204)
    if datum.type == "http":
        return _response_from_http_datum(datum)
    if datum.type == "string":
        return web.Response(status=200, text=str(datum.value), content_type="text/plain")
    if datum.type == "json":
        return web.Response(status=200, text=str(datum.value), content_type="application/json")
    if datum.type == "bytes":
        return web.Response(status=200, body=datum.value, content_type="application/octet-stream")
    raise TypeError(f"cannot answer an HTTP request with a {datum.type!r} output")


def http_output(function: IndexedFunction, result: InvocationResult) -> Datum | None:
    """The Datum of the function's http output binding ($return or a func.Out)."""
    if function.return_binding == "http":
        return result.return_value
    for output in function.outputs:
        if output.binding_type == "http":
            return result.outputs.get(output.name)
    return None


async def serve_http_function(
    request: web.Request,
    function: IndexedFunction,
    route_params: Mapping[str, str],
    invoker: FunctionInvoker,
) -> web.Response:
    body = await read_whole_body(request)
    if body is None:
        return web.Response(status=413, text="request body too large")
    result = await invoker.invoke(
        function,
        request_datum(request, body, route_params),
        reason="This function was programmatically called via the host APIs.",
    )
    if not result.succeeded:
        return web.Response(status=500)
    return response_from_output(http_output(function, result))
