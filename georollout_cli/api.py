"""A small client for the function app's HTTP API (`docs/api.md`), on the standard library.

It knows the routes and the error shape, nothing about what the commands do with them.
TLS is verified as usual (a custom CA only through `REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE`),
and the function key is only ever sent as a header, never logged or shown.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

URL_ENV = "GEOROLLOUT_URL"
FUNCTION_KEY_ENV = "GEOROLLOUT_FUNCTION_KEY"
# An Entra ID access token for an app behind App Service authentication (infra/README.md:
# `az account get-access-token --resource api://<client id> --query accessToken -o tsv`).
ACCESS_TOKEN_ENV = "GEOROLLOUT_ACCESS_TOKEN"
DEFAULT_URL = "http://127.0.0.1:7071"
# Both name a CA bundle that replaces the system's (requests' and OpenSSL's own convention).
CA_BUNDLE_ENVS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
DEFAULT_REQUEST_TIMEOUT_S = 30.0
# The API's own bound on one page of GET /api/rollouts.
MAX_PAGE = 1000
USER_AGENT = "georollout-cli/0.1"
# What an operator may ask of a rollout: `POST /api/rollouts/{id}/{action}`.
ROLLOUT_ACTIONS = ("approve", "hold", "resume", "retry", "rollback")


class ApiConfigError(ValueError):
    """GEOROLLOUT_URL (or the key that goes with it) cannot be used."""


class ApiUnreachable(Exception):
    """No HTTP answer: refused connection, DNS, TLS failure or timeout."""


class ApiError(Exception):
    """The API answered with a status the caller did not expect; `body` is its JSON error
    (or text) as received."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {_route_of(path)} answered {status}: {error_text(body)}")
        self.status = status
        self.body = body

    @property
    def transient(self) -> bool:
        return is_transient(self.status)

    @property
    def message(self) -> str:
        """The `message` of the API's `{"error": {...}}`, else the body as `error_text` has it."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return message if isinstance(message, str) and message.strip() else error_text(self.body)


def is_transient(status: int) -> bool:
    """Statuses worth asking again: the server (or a gateway before it) is busy or failing."""
    return status == 429 or status >= 500


def error_text(body: Any) -> str:
    """The API's JSON error as one line (`{"error": {...}}` verbatim), or the text it sent."""
    if isinstance(body, dict | list):
        return json.dumps(body, separators=(", ", ": "))
    text = str(body or "").strip()
    return text[:500] if text else "(no body)"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiClient:
    """The function app's routes at `base_url`; `function_key` goes in `x-functions-key`."""

    def __init__(
        self,
        base_url: str,
        *,
        function_key: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        access_token: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ApiConfigError(f"{URL_ENV} must be an http(s) URL, e.g. {DEFAULT_URL}")
        for secret, name in ((function_key, FUNCTION_KEY_ENV), (access_token, ACCESS_TOKEN_ENV)):
            if secret and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
                # The key or token would cross the network in clear text.
                raise ApiConfigError(
                    f"{name} is set but {URL_ENV} is plain http to a remote host: use https"
                )
        self.base_url = base_url.rstrip("/")
        self._function_key = function_key
        self._access_token = access_token
        self._ssl_context = ssl_context
        self._timeout = timeout

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiClient:
        """GEOROLLOUT_URL (default http://127.0.0.1:7071) and GEOROLLOUT_FUNCTION_KEY."""
        env = os.environ if environ is None else environ
        base_url = env.get(URL_ENV) or DEFAULT_URL
        context = None
        if urllib.parse.urlsplit(base_url).scheme == "https":
            named = next(((name, env[name]) for name in CA_BUNDLE_ENVS if env.get(name)), None)
            try:
                context = ssl.create_default_context(cafile=named[1] if named else None)
            except (OSError, ssl.SSLError) as error:
                where = f"{named[0]}={named[1]}" if named else "the system CA store"
                raise ApiConfigError(f"cannot load the CA bundle {where}: {error}") from None
        return cls(
            base_url,
            function_key=env.get(FUNCTION_KEY_ENV) or None,
            ssl_context=context,
            access_token=(env.get(ACCESS_TOKEN_ENV) or "").strip() or None,
        )

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context https requests verify with (None for plain http)."""
        return self._ssl_context

    def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ApiResponse:
        """One request; any status is returned. ApiUnreachable when no answer came."""
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if self._function_key:
            sent["x-functions-key"] = self._function_key
        if self._access_token:
            sent["Authorization"] = f"Bearer {self._access_token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        for name, value in sent.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(
                request, timeout=timeout or self._timeout, context=self._ssl_context
            ) as response:
                status, raw, answer_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, answer_headers = error.code, error.headers
            try:
                raw = error.read()
            except OSError:
                raw = b""
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(f"{method} {self.base_url}{_route_of(path)}: {reason}") from None
        return ApiResponse(status, _decode(raw), dict(answer_headers.items()))

    def get_rollout(
        self, rollout_id: str, *, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """`GET /api/rollouts/{id}`: the document, or None on 404."""
        path = rollout_path(rollout_id)
        response = self.request("GET", path, timeout=timeout)
        if response.status == 404:
            return None
        if response.status != 200 or not isinstance(response.body, dict):
            raise ApiError("GET", path, response.status, response.body)
        return response.body

    def act_on_rollout(
        self,
        rollout_id: str,
        action: str,
        *,
        reason: str | None = None,
        regions: Sequence[str] = (),
        actor: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """`POST /api/rollouts/{id}/{action}` (one of ROLLOUT_ACTIONS), asked once: the updated
        document, its `history` ending with this action. `reason`, `regions` and `actor` are
        sent only when given. ApiError on any other answer: 409 when the action does not fit
        the rollout's state, 404 for an unknown rollout, 400 for a region or body refused."""
        if action not in ROLLOUT_ACTIONS:
            raise ValueError(f"{action!r} is not one of {', '.join(ROLLOUT_ACTIONS)}")
        body: dict[str, Any] = {}
        if reason is not None:
            body["reason"] = reason
        if regions:
            body["regions"] = list(regions)
        if actor is not None:
            body["actor"] = actor
        path = f"{rollout_path(rollout_id)}/{action}"
        response = self.post_json_bytes(
            path, json.dumps(body).encode(), headers={}, timeout=timeout
        )
        if response.status != 200 or not isinstance(response.body, dict):
            raise ApiError("POST", path, response.status, response.body)
        return response.body

    def list_page(
        self,
        *,
        repository: str | None = None,
        state: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
        timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of `GET /api/rollouts` (newest first) and the next page's token."""
        query = {"limit": str(min(max(limit, 1), MAX_PAGE))}
        if repository:
            query["repository"] = repository
        if state:
            query["state"] = state
        if continuation:
            query["continuation"] = continuation
        path = "/api/rollouts?" + urllib.parse.urlencode(query)
        response = self.request("GET", path, timeout=timeout)
        body = response.body
        if response.status != 200 or not isinstance(body, dict):
            raise ApiError("GET", path, response.status, body)
        rollouts = [r for r in body.get("rollouts") or [] if isinstance(r, dict)]
        token = body.get("continuation")
        return rollouts, token if isinstance(token, str) and token else None

    def iter_rollouts(
        self,
        *,
        repository: str | None = None,
        state: str | None = None,
        page_size: int = MAX_PAGE,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every rollout the listing holds, newest first, following continuations lazily
        (a page may be short while more follow: the API says so)."""
        continuation: str | None = None
        while True:
            page, continuation = self.list_page(
                repository=repository,
                state=state,
                limit=page_size,
                continuation=continuation,
                timeout=timeout,
            )
            yield from page
            if continuation is None:
                return

    def post_json_bytes(
        self, path: str, data: bytes, *, headers: Mapping[str, str], timeout: float | None = None
    ) -> ApiResponse:
        """POST a JSON body exactly as given (a signature covers these very bytes)."""
        return self.request(
            "POST",
            path,
            data=data,
            headers={"Content-Type": "application/json", **headers},
            timeout=timeout,
        )


def rollout_path(rollout_id: str) -> str:
    """`/api/rollouts/{id}`, the id quoted as one path segment."""
    return "/api/rollouts/" + urllib.parse.quote(rollout_id, safe="")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


def _route_of(path: str) -> str:
    """The path without its query (a query could carry `code=`, a function key)."""
    return path.partition("?")[0]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
