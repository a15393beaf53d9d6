"""Reads the ARM emulator's audit (what Foundry was asked to do, and what the replica said then)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from devenv.config import LocalEnv
from devenv.tls import TlsFiles

DEPLOYMENT_WRITES = ("deployment_create", "deployment_update")


def audit_records(env: LocalEnv, tls: TlsFiles) -> list[dict[str, Any]]:
    """Every audit record so far, oldest first (the emulator wants a bearer token, any will do)."""
    request = urllib.request.Request(
        f"{env.arm_url}/emulator/audit", headers={"Authorization": "Bearer local-test-token"}
    )
    with urllib.request.urlopen(request, context=tls.client_context(), timeout=10) as response:
        records: list[dict[str, Any]] = json.loads(response.read())["records"]
    return records


def records_for(env: LocalEnv, tls: TlsFiles, digest: str) -> list[dict[str, Any]]:
    """The audit records about deployments of `digest`."""
    return [r for r in audit_records(env, tls) if r.get("digest") == digest]


def deployment_writes(env: LocalEnv, tls: TlsFiles, digest: str) -> list[dict[str, Any]]:
    """Every create or update of a deployment of `digest`."""
    return [r for r in records_for(env, tls, digest) if r["action"] in DEPLOYMENT_WRITES]
