"""Where the local environment keeps its state: everything under `.georollout/`."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".georollout"
TLS_DIR = STATE_DIR / "tls"
LOG_DIR = STATE_DIR / "logs"
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
