"""The scoring route each endpoint's scoringUri points at: answers which deployment and image served the call."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from devenv.arm.config import ArmConfig
from devenv.arm.routing import TrafficRotations
from devenv.arm.store import ArmStore, Record, endpoint_key

DEPLOYMENT_HEADER = "azureml-model-deployment"


def _error(status: int, message: str, deployment: str | None = None) -> web.Response:
    # The SDK's invoke expects `{"error": {"message": ...}}` on failure. A call a deployment
    # served names it even when it fails, so a test routing by weight sees which one failed.
    headers = {DEPLOYMENT_HEADER: deployment} if deployment else None
    return web.json_response(
        {"error": {"code": str(status), "message": message}}, status=status, headers=headers
    )


def _live(dep: Record) -> bool:
    return dep.get("serving") is not None and dep["provisioning_state"] in ("Succeeded", "Updating")


class ScoringRoutes:
    """POST /score/{workspace}/{endpoint}: key or token auth, deployment header or traffic weights.

    Without the header the weights pick by smooth weighted round-robin (`routing.py`), not at
    random as Azure does, so tests can count calls. A deployment's `scoring_fault` (set by
    `POST /emulator/deployments/.../scoring`) answers every call it serves.
    """

    def __init__(self, config: ArmConfig, store: ArmStore, rotations: TrafficRotations) -> None:
        self.config = config
        self.store = store
        self.rotations = rotations

    @staticmethod
    def _authorized(ep: Record, header: str) -> bool:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return False
        if ep["auth_mode"] == "AADToken":
            return True  # no local AAD to validate against: any bearer token, as on the ARM routes
        accepted = [*ep["keys"].values(), ep["token"]]
        return any(hmac.compare_digest(credential.strip(), value) for value in accepted)

    async def score(self, request: web.Request) -> web.Response:
        ws = self.config.workspace_named(request.match_info["workspace"])
        ep = (
            self.store.endpoints.get(endpoint_key(ws.name, request.match_info["endpoint"]))
            if ws
            else None
        )
        if ws is None or ep is None or ep["provisioning_state"] == "Deleting":
            return _error(404, "No such endpoint.")
        if not self._authorized(ep, request.headers.get("Authorization", "")):
            return _error(401, "Unauthorized: send Authorization: Bearer <endpoint key or token>.")
        deployments = {d["name"].lower(): d for d in self.store.deployments_of(ws.name, ep["name"])}
        wanted = request.headers.get(DEPLOYMENT_HEADER)
        if wanted:
            dep = deployments.get(wanted.lower())
            if dep is None:
                return _error(
                    404, f"Deployment '{wanted}' does not exist on endpoint '{ep['name']}'."
                )
            if not _live(dep):
                return _error(
                    424,
                    f"Deployment '{dep['name']}' is not live (provisioning state {dep['provisioning_state']}).",
                )
        else:
            # Non-live deployments keep their weight in the map but serve nothing: skipped.
            weighted = [
                (deployments[name.lower()]["name"], weight)
                for name, weight in (ep.get("traffic") or {}).items()
                if weight > 0 and name.lower() in deployments and _live(deployments[name.lower()])
            ]
            if not weighted:
                return _error(
                    404, "The endpoint doesn't have any valid deployment with positive weight."
                )
            picked = self.rotations.pick(endpoint_key(ws.name, ep["name"]), weighted)
            dep = deployments[picked.lower()]
        fault = dep.get("scoring_fault")
        if fault is not None:
            return _error(int(fault["status"]), str(fault["message"]), dep["name"])
        body = await request.read()
        answer: dict[str, Any] = {
            "deployment": dep["name"],
            "endpoint": ep["name"],
            "workspace": ws.name,
            "region": ws.region,
            "image": dep["serving"]["image"],
            "digest": dep["serving"]["digest"],
            "request_bytes": len(body),
        }
        return web.json_response(answer, headers={DEPLOYMENT_HEADER: dep["name"]})
