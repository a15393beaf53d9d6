"""`GET /api/dashboard`: one HTML page, every byte from the app (no CDN, no outside asset).

The page's script and style are inlined and pinned by their SHA-256 in a Content Security
Policy, so the browser runs exactly them and nothing else (no injected script, no outside
connection: `connect-src 'self'`). The page reads the same JSON as the API
(`GET /api/rollouts`, `GET /api/stats`) and acts through `POST /api/rollouts/{id}/{action}`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

ASSETS = Path(__file__).with_name("dashboard_assets")


def _source_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@functools.cache
def page() -> tuple[bytes, dict[str, str]]:
    """The page's bytes and its response headers (built once per process)."""
    style = (ASSETS / "dashboard.css").read_text(encoding="utf-8")
    script = (ASSETS / "dashboard.js").read_text(encoding="utf-8")
    template = (ASSETS / "dashboard.html").read_text(encoding="utf-8")
    html = template.replace("{{STYLE}}", style).replace("{{SCRIPT}}", script)
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_source_hash(script)}",
            f"style-src {_source_hash(style)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Opened with ?code=<function key> in Azure: never cached by anything in between.
        "Cache-Control": "no-store",
    }
    return html.encode("utf-8"), headers
