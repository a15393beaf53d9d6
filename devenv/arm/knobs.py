"""Test knobs on one deployment: make its scoring answer an error, or make it turn unhealthy.

Both are `POST /emulator/deployments/{workspace}/{endpoint}/{deployment}/...` with a bearer token
(the app's middleware checks it, as for every `/emulator/` route but health). Both write their
change into the deployment's own record, so a deployment deleted and created again under the
same name starts healthy, and both leave an audit record so a test can see when they were set.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from devenv.arm.audit import AuditLog
from devenv.arm.config import ArmConfig, WorkspaceConfig
from devenv.arm.errors import ArmError, bad_argument, conflict, not_found
from devenv.arm.resources import now_iso
from devenv.arm.store import ArmStore, Record, deployment_key, endpoint_key

SCORING_FAULT_FIELDS = frozenset({"status", "message"})
# A deployment whose own operation is still running ends as that operation decides; only one
# that has ended can be made to fail.
FAILABLE_STATES = frozenset({"Succeeded", "Failed"})
UNHEALTHY_ERROR = {
    "code": "DeploymentUnhealthy",
    "message": (
        "The deployment's last update or scale operation failed and its instances are not "
        "serving (set by the emulator's /fail knob)."
    ),
}


def parse_scoring_fault(raw: bytes, deployment: str) -> Record | None:
    """`{"status": 400..599, "message"?: str}` -> the fault; `{"status": null}` -> None (healthy)."""
    usage = 'send {"status": <HTTP status 400-599>, "message": "..."} or {"status": null}'
    try:
        body: Any = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise bad_argument(f"the request body is not JSON ({error}); {usage}") from error
    if not isinstance(body, dict) or "status" not in body:
        raise bad_argument(f"the request body must be a JSON object with status; {usage}")
    unknown = sorted(set(body) - SCORING_FAULT_FIELDS)
    if unknown:
        # A misspelt field silently ignored would leave the deployment healthy by surprise.
        raise bad_argument(f"unknown fields {unknown}; {usage}")
    status, message = body["status"], body.get("message")
    if status is None:
        if message is not None:
            raise bad_argument(f"a message needs a status; {usage}")
        return None
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise bad_argument(f"status must be an integer from 400 to 599, not {status!r}; {usage}")
    if message is None:
        message = (
            f"Deployment '{deployment}' failed to score the request (emulator fault {status})."
        )
    elif not isinstance(message, str) or not message.strip():
        raise bad_argument(f"message must be a non-empty string; {usage}")
    return {"status": status, "message": message}


class DeploymentKnobs:
    """The handlers of the per-deployment knobs."""

    def __init__(self, config: ArmConfig, store: ArmStore, audit: AuditLog) -> None:
        self.config = config
        self.store = store
        self.audit = audit

    def _target(self, request: web.Request) -> tuple[WorkspaceConfig, Record, Record]:
        workspace = request.match_info["workspace"]
        endpoint = request.match_info["endpoint"]
        name = request.match_info["deployment"]
        ws = self.config.workspace_named(workspace)
        if ws is None:
            raise ArmError(
                404, "ResourceNotFound", f"The emulator has no workspace named '{workspace}'."
            )
        ep = self.store.endpoints.get(endpoint_key(ws.name, endpoint))
        if ep is None:
            raise not_found("workspaces/onlineEndpoints", endpoint, f"workspace '{ws.name}'")
        dep = self.store.deployments.get(deployment_key(ws.name, endpoint, name))
        if dep is None:
            raise not_found(
                "workspaces/onlineEndpoints/deployments", name, f"endpoint '{endpoint}'"
            )
        return ws, ep, dep

    async def set_scoring_fault(self, request: web.Request) -> web.Response:
        """Every scoring call this deployment serves (by header or by weight) answers the fault."""
        ws, ep, dep = self._target(request)
        fault = parse_scoring_fault(await request.read(), dep["name"])
        dep["scoring_fault"] = fault
        self.store.save()
        self.audit.append(
            "scoring_fault_set",
            workspace=ws.name,
            region=ws.region,
            endpoint=ep["name"],
            deployment=dep["name"],
            status=fault["status"] if fault else None,
            message=fault["message"] if fault else None,
        )
        return web.json_response({"deployment": dep["name"], "scoringFault": fault})

    async def fail_deployment(self, request: web.Request) -> web.Response:
        """A provisioned deployment ends `Failed`, as (in this emulator's reading of Azure) one
        whose update or scale operation failed does; it serves nothing until a PUT of the
        deployment provisions it again."""
        ws, ep, dep = self._target(request)
        previous = str(dep["provisioning_state"])
        if previous not in FAILABLE_STATES:
            raise conflict(
                f"Deployment '{dep['name']}' is {previous}: its running operation decides how it "
                "ends. Fail it once it is Succeeded."
            )
        now = now_iso()
        dep.update(
            provisioning_state="Failed", serving=None, error=dict(UNHEALTHY_ERROR), modified_at=now
        )
        dep["logs"].append(f"{now} {UNHEALTHY_ERROR['code']}: {UNHEALTHY_ERROR['message']}")
        self.store.save()
        self.audit.append(
            "deployment_unhealthy",
            workspace=ws.name,
            region=ws.region,
            endpoint=ep["name"],
            deployment=dep["name"],
            image=dep["image"],
            digest=dep["digest"],
            previous_state=previous,
        )
        return web.json_response({"provisioningState": "Failed"})
