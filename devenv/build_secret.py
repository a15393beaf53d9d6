"""The local build webhook's secret: made once per environment, kept in its state folder.

`make up` keeps it in `.georollout/build-webhook-secret` (one line, `whsec_...`, readable by
its owner only), configures the app with it, and `georollout notify` reads it from
`GEOROLLOUT_BUILD_WEBHOOK_SECRET`.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

FILE_NAME = "build-webhook-secret"


def build_webhook_secret(state_dir: Path) -> str:
    """The secret of the environment under `state_dir`, created on first use."""
    path = state_dir / FILE_NAME
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    # Created with 0600 from the start: the secret is never readable by others, not even
    # for the moment between writing and a chmod.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    return secret
