"""A local managed-identity endpoint, as App Service and Functions provide one to the app.

The platform sets IDENTITY_ENDPOINT and IDENTITY_HEADER; azure-identity's
ManagedIdentityCredential (and so DefaultAzureCredential) asks that endpoint
for tokens. Serving it from the local host lets the product use
DefaultAzureCredential unchanged; the local stand-ins accept any bearer token.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import MutableMapping

from aiohttp import web

TOKEN_PATH = "/msi/token"
_TOKEN_LIFETIME_S = 3600


def configure_identity_environment(
    port: int, environ: MutableMapping[str, str] | None = None
) -> None:
    """Point azure-identity at this host's endpoint unless the environment already names one."""
    target = os.environ if environ is None else environ
    if "IDENTITY_ENDPOINT" in target:
        return
    target["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{port}{TOKEN_PATH}"
    target["IDENTITY_HEADER"] = secrets.token_urlsafe(24)


def serve_token(request: web.Request) -> web.Response:
    expected = os.environ.get("IDENTITY_HEADER", "")
    offered = request.headers.get("X-IDENTITY-HEADER", "")
    if not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
        return web.json_response({"error": "missing or wrong X-IDENTITY-HEADER"}, status=401)
    resource = request.query.get("resource", "")
    if not resource:
        return web.json_response({"error": "resource is required"}, status=400)
    expires_on = int(time.time()) + _TOKEN_LIFETIME_S
    return web.json_response(
        {
            "access_token": "local-" + secrets.token_urlsafe(32),
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": "00000000-0000-0000-0000-000000000000",
        }
    )
