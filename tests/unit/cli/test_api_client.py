"""Where the command connects and whom it trusts: GEOROLLOUT_URL, the function key, CA bundles."""

from __future__ import annotations

import email.message
import io
import re
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

from devenv.tls import TlsFiles
from georollout_cli.api import ApiClient, ApiConfigError, ApiError, ApiUnreachable, error_text


def test_the_default_is_the_local_host_over_http_without_tls() -> None:
    client = ApiClient.from_environment({})
    assert client.base_url == "http://127.0.0.1:7071" and client.ssl_context is None


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_https_verifies_with_the_named_ca_bundle(tls_files: TlsFiles, variable: str) -> None:
    client = ApiClient.from_environment(
        {"GEOROLLOUT_URL": "https://georollout.example.com/", variable: str(tls_files.ca_pem)}
    )
    context = client.ssl_context
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    loaded = ssl.create_default_context(cafile=str(tls_files.ca_pem)).get_ca_certs()
    assert context.get_ca_certs() == loaded and client.base_url == "https://georollout.example.com"


def test_https_without_a_bundle_verifies_against_the_system_store() -> None:
    context = ApiClient.from_environment({"GEOROLLOUT_URL": "https://example.com"}).ssl_context
    assert (
        context is not None and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    )


def test_a_missing_ca_bundle_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ApiConfigError, match=re.escape("REQUESTS_CA_BUNDLE=/nonexistent/ca.pem")):
        ApiClient.from_environment(
            {"GEOROLLOUT_URL": "https://example.com", "REQUESTS_CA_BUNDLE": "/nonexistent/ca.pem"}
        )


@pytest.mark.parametrize("url", ["ftp://example.com", "127.0.0.1:7071", "http://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ApiConfigError, match="GEOROLLOUT_URL must be an http"):
        ApiClient.from_environment({"GEOROLLOUT_URL": url})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:7071", "http://localhost:7071", "http://[::1]:7071"]
)
def test_a_function_key_may_go_over_http_to_this_machine_only(url: str) -> None:
    assert ApiClient.from_environment({"GEOROLLOUT_URL": url, "GEOROLLOUT_FUNCTION_KEY": "k"})


class Answer:
    """What urllib's urlopen gives back, for a request that never leaves the process."""

    def __init__(self, status: int, raw: bytes) -> None:
        self.status, self._raw, self.headers = status, raw, email.message.Message()

    def read(self) -> bytes:
        return self._raw

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_requests_carry_the_function_key_header_and_read_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[urllib.request.Request] = []

    def urlopen(request: urllib.request.Request, **kwargs: Any) -> Answer:
        sent.append(request)
        return Answer(200, b'{"id": "x"}')

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    client = ApiClient("http://127.0.0.1:7071/", function_key="the-key")
    assert client.get_rollout("a~b~sha256-c") == {"id": "x"}
    [request] = sent
    assert request.full_url == "http://127.0.0.1:7071/api/rollouts/a~b~sha256-c"
    assert request.get_header("X-functions-key") == "the-key"


def test_an_error_status_is_an_answer_and_no_answer_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(request: urllib.request.Request, **kwargs: Any) -> Answer:
        raise urllib.error.HTTPError(
            request.full_url,
            400,
            "Bad Request",
            email.message.Message(),
            io.BytesIO(b'{"error": {"code": "x"}}'),
        )

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    client = ApiClient("http://127.0.0.1:7071", function_key="the-key")
    with pytest.raises(ApiError) as raised:
        client.list_page(repository="models/llm")
    assert raised.value.status == 400 and raised.value.body == {"error": {"code": "x"}}
    assert "?" not in str(raised.value)  # the query (it could carry code=) is never shown

    def down(request: urllib.request.Request, **kwargs: Any) -> Answer:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", down)
    with pytest.raises(ApiUnreachable, match="Connection refused"):
        client.get_rollout("x")


def test_an_error_body_is_shown_as_the_api_sent_it() -> None:
    body = {"error": {"code": "invalid_state", "message": "state: must be one of ..."}}
    assert (
        error_text(body)
        == '{"error": {"code": "invalid_state", "message": "state: must be one of ..."}}'
    )
    assert error_text("<html>Bad gateway</html>\n") == "<html>Bad gateway</html>"
    assert error_text(None) == "(no body)"
