"""Long-running operations: started by PUT/DELETE, completed by the wall clock at their recorded due time.

Completion of a deployment looks its image up in the workspace region's own
registry replica; a missing manifest fails the operation with an image-pull
error, as a managed online deployment fails in Azure.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from typing import Any

from devenv.arm.audit import AuditLog
from devenv.arm.config import ArmConfig, WorkspaceConfig
from devenv.arm.image_check import ImageLookup, lookup_image, parse_image_ref
from devenv.arm.resources import now_iso, workspace_guid
from devenv.arm.store import ArmStore, Record, deployment_key, endpoint_key

RUNNING = "Updating"  # what ARM's mfeOperationsStatus says while any operation runs
IMAGE_PULL_FAILED = "ImagePullFailed"
# ARM's terminal provisioning states; every other one means the resource is still changing.
TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled"})
# What an endpoint says between its operation's success and settling (Azure/azure-sdk-for-net#36961).
SETTLING_STATE = "Updating"


def image_pull_error(image: str, region: str, lookup: ImageLookup) -> dict[str, str]:
    return {
        "code": IMAGE_PULL_FAILED,
        "message": (
            f"Image pull failed: the container image '{image}' could not be pulled in region "
            f"'{region}' ({lookup.detail}). Check that the image exists in the registry replica "
            "of this region and that the endpoint identity can pull it."
        ),
    }


class Provisioner:
    """Creates operation records and settles the ones whose due time has passed."""

    def __init__(
        self, config: ArmConfig, store: ArmStore, audit: AuditLog, ssl_context: ssl.SSLContext
    ) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.ssl_context = ssl_context
        self._lock = asyncio.Lock()

    # -- starting -----------------------------------------------------------------

    def duration(self, kind: str) -> float:
        # Creating compute takes the configured time; traffic changes and deletes are quicker in Azure too.
        if kind in ("endpoint_create", "deployment_create", "deployment_update"):
            return self.config.provisioning_s
        return self.config.provisioning_s / 4

    def start(
        self, kind: str, ws: WorkspaceConfig, endpoint: str, deployment: str | None = None
    ) -> Record:
        prefix = "odidp" if kind.startswith("deployment") else "oeidp"
        started = time.time()
        op: Record = {
            "id": f"{prefix}:{workspace_guid(ws)}:{uuid.uuid4()}",
            "kind": kind,
            "workspace": ws.name,
            "endpoint": endpoint,
            "deployment": deployment,
            "status": RUNNING,
            "started_at": started,
            "due_at": started + self.duration(kind),
            "ended_at": None,
            "error": None,
        }
        self.store.operations[op["id"]] = op
        return op

    def cancel(self, op_id: str | None, reason: str) -> None:
        op = self.store.operations.get(op_id or "")
        if op is not None and op["status"] == RUNNING:
            op.update(
                status="Canceled",
                ended_at=time.time(),
                error={"code": "Canceled", "message": reason},
            )

    def running_operation(self, op_id: str | None) -> Record | None:
        op = self.store.operations.get(op_id or "")
        return op if op is not None and op["status"] == RUNNING else None

    # -- settling -----------------------------------------------------------------

    async def settle_due(self) -> None:
        async with self._lock:
            now = time.time()
            due = sorted(
                (
                    op
                    for op in self.store.operations.values()
                    if op["status"] == RUNNING and op["due_at"] <= now
                ),
                key=lambda op: op["due_at"],
            )
            for op in due:
                await self._settle(op)
                self.store.save()
            if self._settle_endpoints(time.time()):
                self.store.save()

    def _settle_endpoints(self, now: float) -> bool:
        """Endpoints whose operation is over and whose settle time has passed become `Succeeded`."""
        changed = False
        for ep in self.store.endpoints.values():
            if ep["provisioning_state"] not in ("Creating", SETTLING_STATE):
                continue
            if self.running_operation(ep.get("operation_id")) is not None:
                continue
            if (ep.get("settles_at") or 0.0) > now:
                continue
            ep.update(provisioning_state="Succeeded", settles_at=None, modified_at=now_iso())
            changed = True
        return changed

    async def _settle(self, op: Record) -> None:
        ws = self.config.workspace_named(op["workspace"])
        kind = op["kind"]
        if ws is None:
            self._finish(
                op, {"code": "WorkspaceNotFound", "message": f"workspace {op['workspace']} is gone"}
            )
            return
        if kind in ("endpoint_create", "endpoint_update"):
            self._settle_endpoint_write(ws, op)
        elif kind == "endpoint_delete":
            self._settle_endpoint_delete(ws, op)
        elif kind in ("deployment_create", "deployment_update"):
            await self._settle_deployment_write(ws, op)
        elif kind == "deployment_delete":
            self.store.deployments.pop(
                deployment_key(ws.name, op["endpoint"], op["deployment"]), None
            )
            self._finish(op, None)
        else:
            self._finish(op, {"code": "InternalError", "message": f"unknown operation kind {kind}"})

    def _finish(self, op: Record, error: dict[str, Any] | None) -> None:
        op.update(status="Failed" if error else "Succeeded", ended_at=time.time(), error=error)

    def _settle_endpoint_write(self, ws: WorkspaceConfig, op: Record) -> None:
        ep = self.store.endpoints.get(endpoint_key(ws.name, op["endpoint"]))
        if ep is None:
            self._finish(op, {"code": "ResourceNotFound", "message": "the endpoint was deleted"})
            return
        ep["scoring_uri"] = f"{self.config.base_url}/score/{ws.name}/{ep['name']}"
        ep["modified_at"] = now_iso()
        self._finish(op, None)
        # The operation reports success now, but Azure keeps the endpoint `Updating` a little
        # longer and refuses deployment PUTs meanwhile (Azure/azure-sdk-for-net#36961).
        # `_settle_endpoints` makes it `Succeeded` once `settles_at` has passed.
        ep["provisioning_state"] = SETTLING_STATE
        ep["settles_at"] = op["ended_at"] + self.config.endpoint_settle_s
        self._settle_endpoints(time.time())

    def _settle_endpoint_delete(self, ws: WorkspaceConfig, op: Record) -> None:
        key = endpoint_key(ws.name, op["endpoint"])
        self.store.endpoints.pop(key, None)
        for dep_key in [k for k in self.store.deployments if k.startswith(key + "/")]:
            self.store.deployments.pop(dep_key)
        self._finish(op, None)

    async def _settle_deployment_write(self, ws: WorkspaceConfig, op: Record) -> None:
        key = deployment_key(ws.name, op["endpoint"], op["deployment"])
        dep = self.store.deployments.get(key)
        if dep is None or dep.get("operation_id") != op["id"]:
            self._finish(
                op, {"code": "Canceled", "message": "the deployment changed or was deleted"}
            )
            return
        lookup = await lookup_image(
            ws.registry_url, parse_image_ref(dep["image"]), self.ssl_context
        )
        # The lookup awaited: re-read in case a delete arrived meanwhile.
        dep = self.store.deployments.get(key)
        if dep is None or dep.get("operation_id") != op["id"] or op["status"] != RUNNING:
            return
        dep["modified_at"] = now_iso()
        if lookup.present:
            dep.update(
                provisioning_state="Succeeded",
                serving={"image": dep["image"], "digest": dep["digest"]},
            )
            dep["error"] = None
            dep["logs"].append(f"{now_iso()} Pulled container image {dep['image']}")
            dep["logs"].append(f"{now_iso()} Container started; readiness probe succeeded")
            self._finish(op, None)
        else:
            error = image_pull_error(dep["image"], ws.region, lookup)
            dep.update(provisioning_state="Failed", serving=None, error=error)
            dep["logs"].append(f"{now_iso()} ImagePullFailed: {error['message']}")
            self._finish(op, error)
        self.audit.append(
            "deployment_provisioned" if lookup.present else "deployment_failed",
            workspace=ws.name,
            region=ws.region,
            endpoint=dep["endpoint"],
            deployment=dep["name"],
            image=dep["image"],
            digest=dep["digest"],
            image_present_at_completion=lookup.present,
            registry_answer=lookup.detail,
        )
