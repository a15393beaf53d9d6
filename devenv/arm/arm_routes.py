"""The ARM routes azure-ai-ml's MLClient calls for workspaces, online endpoints, deployments and environments."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from typing import Any

from aiohttp import web

from devenv.arm.audit import AuditLog
from devenv.arm.config import ArmConfig, WorkspaceConfig
from devenv.arm.errors import ArmError, bad_argument, conflict, endpoint_not_ready, not_found
from devenv.arm.image_check import ImageReferenceError, lookup_image, parse_image_ref
from devenv.arm.provisioning import TERMINAL_STATES, Provisioner
from devenv.arm.resources import (
    PROVIDER,
    deployment_body,
    endpoint_body,
    environment_body,
    now_iso,
    operation_body,
    operation_url,
    workspace_body,
)
from devenv.arm.routing import TrafficRotations
from devenv.arm.store import ArmStore, Record, deployment_key, endpoint_key, environment_key

AUTH_MODES = {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}


def _lower(segments: list[str]) -> list[str]:
    return [s.lower() for s in segments]


class ArmRoutes:
    """Dispatches `/subscriptions/...` requests by their path segments (ARM paths compare case-insensitively)."""

    def __init__(
        self,
        config: ArmConfig,
        store: ArmStore,
        audit: AuditLog,
        provisioner: Provisioner,
        rotations: TrafficRotations,
    ) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.provisioner = provisioner
        # Scoring's round-robin state; a traffic change starts it over (see routing.py).
        self.rotations = rotations
        # Poll pacing for the SDK: a tenth of the provisioning time, within 50 ms .. 1 s.
        self.retry_after_ms = str(int(min(1000, max(50, config.provisioning_s * 100))))
        # Status reads per operation, for tests (`GET /emulator/operations/{id}`): who polls
        # an operation, and how often, is visible only here.
        self.operation_reads: Counter[str] = Counter()

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        await self.provisioner.settle_due()
        seg = [s for s in request.path.split("/") if s]
        low = _lower(seg)
        method = request.method
        # /subscriptions/{s}/providers/{P}/locations/{region}/mfeOperationsStatus/{id}
        if (
            len(seg) == 8
            and low[2] == "providers"
            and low[4] == "locations"
            and low[6] == "mfeoperationsstatus"
        ):
            return self.operation_status(seg[1], seg[7])
        if (
            len(seg) < 8
            or low[0] != "subscriptions"
            or low[2] != "resourcegroups"
            or low[4] != "providers"
        ):
            raise ArmError(404, "InvalidResourceType", f"no route for {request.path}")
        if low[5] != PROVIDER.lower() or low[6] != "workspaces":
            raise ArmError(
                404, "InvalidResourceType", f"the emulator serves only {PROVIDER}/workspaces"
            )
        ws = self.config.workspace(seg[1], seg[3], seg[7])
        if ws is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{PROVIDER}/workspaces/{seg[7]}' under resource group '{seg[3]}' was not found.",
            )
        rest, low_rest = seg[8:], low[8:]
        route = (method, len(rest), *low_rest[:1], *low_rest[2:3], *low_rest[4:5])
        match route:
            case ("GET", 0):
                return web.json_response(workspace_body(ws))
            case ("GET", 1, "onlineendpoints"):
                return self.list_endpoints(ws)
            case ("GET", 2, "onlineendpoints"):
                return self.get_endpoint(ws, rest[1])
            case ("PUT", 2, "onlineendpoints"):
                return self.put_endpoint(ws, rest[1], await self._json(request))
            case ("DELETE", 2, "onlineendpoints"):
                return self.delete_endpoint(ws, rest[1])
            case ("POST", 3, "onlineendpoints", "listkeys"):
                return self.list_keys(ws, rest[1])
            case ("POST", 3, "onlineendpoints", "token"):
                return self.get_token(ws, rest[1])
            case ("GET", 3, "onlineendpoints", "deployments"):
                return self.list_deployments(ws, rest[1])
            case ("GET", 4, "onlineendpoints", "deployments"):
                return self.get_deployment(ws, rest[1], rest[3])
            case ("PUT", 4, "onlineendpoints", "deployments"):
                return await self.put_deployment(ws, rest[1], rest[3], await self._json(request))
            case ("DELETE", 4, "onlineendpoints", "deployments"):
                return self.delete_deployment(ws, rest[1], rest[3])
            case ("POST", 5, "onlineendpoints", "deployments", "getlogs"):
                return self.get_logs(ws, rest[1], rest[3], await self._json(request))
            case ("GET", 4, "environments", "versions"):
                return self.get_environment(ws, rest[1], rest[3])
            case ("PUT", 4, "environments", "versions"):
                return self.put_environment(ws, rest[1], rest[3], await self._json(request))
        raise ArmError(
            404, "NoRouteFound", f"the emulator has no route for {method} {request.path}"
        )

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as error:
            raise bad_argument(f"the request body is not JSON: {error}") from error
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise bad_argument("the request body must be a JSON object")
        return body

    def _endpoint(self, ws: WorkspaceConfig, name: str) -> Record:
        ep = self.store.endpoints.get(endpoint_key(ws.name, name))
        if ep is None:
            raise not_found("workspaces/onlineEndpoints", name, f"workspace '{ws.name}'")
        return ep

    def _deployment(self, ws: WorkspaceConfig, endpoint: str, name: str) -> Record:
        self._endpoint(ws, endpoint)
        dep = self.store.deployments.get(deployment_key(ws.name, endpoint, name))
        if dep is None:
            raise not_found(
                "workspaces/onlineEndpoints/deployments", name, f"endpoint '{endpoint}'"
            )
        return dep

    def _async_url(self, ws: WorkspaceConfig, record: Record) -> str | None:
        op_id = record.get("operation_id")
        return operation_url(self.config.base_url, ws, op_id) if op_id else None

    def _accepted(
        self, ws: WorkspaceConfig, op: Record, body: Any, status: int, location: str
    ) -> web.Response:
        headers = {
            "Azure-AsyncOperation": operation_url(self.config.base_url, ws, op["id"]),
            "Location": location,
            "x-ms-async-operation-timeout": "PT30M",
            "retry-after-ms": self.retry_after_ms,
        }
        return web.json_response(body, status=status, headers=headers)

    def _resource_url(self, request_path: str) -> str:
        return f"{self.config.base_url}{request_path}"

    # -- operations ---------------------------------------------------------------

    def operation_status(self, subscription: str, op_id: str) -> web.Response:
        op = self.store.operations.get(op_id)
        ws = self.config.workspace_named(op["workspace"]) if op else None
        if op is None or ws is None or ws.subscription_id.lower() != subscription.lower():
            raise ArmError(404, "ResourceNotFound", f"operation '{op_id}' was not found")
        self.operation_reads[op_id] += 1
        headers = {"retry-after-ms": self.retry_after_ms} if op["status"] == "Updating" else {}
        return web.json_response(operation_body(ws, op), headers=headers)

    # -- endpoints ----------------------------------------------------------------

    def list_endpoints(self, ws: WorkspaceConfig) -> web.Response:
        value = [
            endpoint_body(ws, ep, self._async_url(ws, ep))
            for ep in self.store.endpoints_of(ws.name)
        ]
        return web.json_response({"value": value})

    def get_endpoint(self, ws: WorkspaceConfig, name: str) -> web.Response:
        ep = self._endpoint(ws, name)
        return web.json_response(endpoint_body(ws, ep, self._async_url(ws, ep)))

    def _validate_traffic(self, ws: WorkspaceConfig, endpoint: str, traffic: Any) -> dict[str, int]:
        if not isinstance(traffic, dict):
            raise bad_argument(
                "traffic must be a map of deployment name to percentage", target="traffic"
            )
        deployments = {d["name"].lower(): d for d in self.store.deployments_of(ws.name, endpoint)}
        clean: dict[str, int] = {}
        for name, value in traffic.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                raise bad_argument(
                    f"traffic for deployment '{name}' must be an integer percentage from 0 to 100",
                    target="traffic",
                )
            dep = deployments.get(str(name).lower())
            if dep is None or dep["provisioning_state"] == "Deleting":
                raise bad_argument(
                    f"Traffic is set for deployment '{name}', which does not exist on endpoint '{endpoint}'.",
                    target="traffic",
                )
            if value > 0 and dep["provisioning_state"] not in ("Succeeded", "Updating"):
                raise bad_argument(
                    f"Traffic cannot go to deployment '{name}': its provisioning state is "
                    f"{dep['provisioning_state']}.",
                    target="traffic",
                )
            clean[dep["name"]] = value
        total = sum(clean.values())
        if total not in (0, 100):
            raise bad_argument(
                f"The traffic percentages of endpoint '{endpoint}' add up to {total}; they must add up to 100.",
                target="traffic",
            )
        return clean

    def put_endpoint(self, ws: WorkspaceConfig, name: str, body: dict[str, Any]) -> web.Response:
        props = body.get("properties")
        if not isinstance(props, dict):
            raise bad_argument("properties is required", target="properties")
        auth_mode = AUTH_MODES.get(str(props.get("authMode") or "Key").lower())
        if auth_mode is None:
            raise bad_argument(
                f"authMode '{props.get('authMode')}' is not Key, AMLToken or AADToken"
            )
        key = endpoint_key(ws.name, name)
        existing = self.store.endpoints.get(key)
        # ARM allows one write at a time on a resource: a PUT that meets one in progress is 409
        # (Azure/azure-resource-manager-rpc, v1.0/Addendum.md, "Creating/Updating using PUT").
        # An endpoint still settling after its operation succeeded counts as in progress: it
        # says `Updating`, as it does in Azure (Azure/azure-sdk-for-net#36961).
        if existing is not None and (
            self.provisioner.running_operation(existing.get("operation_id"))
            or existing["provisioning_state"] not in TERMINAL_STATES
        ):
            if existing["provisioning_state"] == "Deleting":
                raise conflict(f"Endpoint '{name}' is being deleted.")
            raise conflict(
                f"Endpoint '{name}' has an operation in progress; retry when it finishes."
            )
        traffic = self._validate_traffic(ws, name, props.get("traffic") or {})
        now = now_iso()
        ep: Record = existing or {
            "name": name,
            "workspace": ws.name,
            "created_at": now,
            "scoring_uri": None,
            "keys": {
                "primaryKey": secrets.token_urlsafe(32),
                "secondaryKey": secrets.token_urlsafe(32),
            },
            "token": secrets.token_urlsafe(32),
        }
        old_traffic = dict(ep.get("traffic") or {})
        op = self.provisioner.start(
            "endpoint_update" if existing else "endpoint_create", ws, ep["name"]
        )
        ep.update(
            auth_mode=auth_mode,
            traffic=traffic,
            mirror_traffic=props.get("mirrorTraffic") or {},
            description=props.get("description"),
            user_properties=props.get("properties") or {},
            tags=body.get("tags") or {},
            identity=body.get("identity") or {"type": "SystemAssigned"},
            provisioning_state="Updating" if existing else "Creating",
            operation_id=op["id"],
            settles_at=None,
            modified_at=now,
        )
        self.store.endpoints[key] = ep
        self.store.save()
        if traffic != old_traffic:
            self.rotations.reset(key)
            self.audit.append(
                "traffic_changed",
                workspace=ws.name,
                region=ws.region,
                endpoint=ep["name"],
                traffic=traffic,
                previous_traffic=old_traffic,
                deployments={
                    d["name"]: {"image": d["image"], "digest": d["digest"]}
                    for d in self.store.deployments_of(ws.name, name)
                    if traffic.get(d["name"], 0) > 0
                },
            )
        location = f"{self.config.base_url}{ws.arm_id}/onlineEndpoints/{ep['name']}"
        return self._accepted(ws, op, endpoint_body(ws, ep, self._async_url(ws, ep)), 201, location)

    def delete_endpoint(self, ws: WorkspaceConfig, name: str) -> web.Response:
        ep = self._endpoint(ws, name)
        running = self.provisioner.running_operation(ep.get("operation_id"))
        if running is not None and running["kind"] == "endpoint_delete":
            return self._accepted(
                ws, running, None, 202, operation_url(self.config.base_url, ws, running["id"])
            )
        self.provisioner.cancel(ep.get("operation_id"), "the endpoint is being deleted")
        for dep in self.store.deployments_of(ws.name, name):
            self.provisioner.cancel(dep.get("operation_id"), "the endpoint is being deleted")
            dep["provisioning_state"] = "Deleting"
        op = self.provisioner.start("endpoint_delete", ws, ep["name"])
        ep.update(
            provisioning_state="Deleting",
            operation_id=op["id"],
            settles_at=None,
            modified_at=now_iso(),
        )
        self.store.save()
        self.rotations.reset(endpoint_key(ws.name, name))
        self.audit.append(
            "endpoint_deleted",
            workspace=ws.name,
            region=ws.region,
            endpoint=ep["name"],
            deployments=[d["name"] for d in self.store.deployments_of(ws.name, name)],
        )
        return self._accepted(ws, op, None, 202, operation_url(self.config.base_url, ws, op["id"]))

    def list_keys(self, ws: WorkspaceConfig, name: str) -> web.Response:
        ep = self._endpoint(ws, name)
        if ep["auth_mode"] != "Key":
            raise bad_argument(
                f"Endpoint '{name}' uses {ep['auth_mode']} authentication; it has no keys."
            )
        return web.json_response(dict(ep["keys"]))

    def get_token(self, ws: WorkspaceConfig, name: str) -> web.Response:
        ep = self._endpoint(ws, name)
        if ep["auth_mode"] != "AMLToken":
            raise bad_argument(
                f"Endpoint '{name}' uses {ep['auth_mode']} authentication, not AMLToken."
            )
        return web.json_response(
            {
                "accessToken": ep["token"],
                "tokenType": "Bearer",
                "expiryTimeUtc": 4102444800,
                "refreshAfterTimeUtc": 4102444800,
            }
        )

    # -- deployments --------------------------------------------------------------

    def list_deployments(self, ws: WorkspaceConfig, endpoint: str) -> web.Response:
        self._endpoint(ws, endpoint)
        value = [
            deployment_body(ws, d, self._async_url(ws, d))
            for d in self.store.deployments_of(ws.name, endpoint)
        ]
        return web.json_response({"value": value})

    def get_deployment(self, ws: WorkspaceConfig, endpoint: str, name: str) -> web.Response:
        dep = self._deployment(ws, endpoint, name)
        return web.json_response(deployment_body(ws, dep, self._async_url(ws, dep)))

    def _environment_image(self, ws: WorkspaceConfig, environment_id: Any) -> str:
        if not isinstance(environment_id, str) or not environment_id:
            raise bad_argument("properties.environmentId is required", target="environmentId")
        seg = [s for s in environment_id.split("/") if s]
        low = _lower(seg)
        if len(seg) < 4 or low[-4] != "environments" or low[-2] != "versions":
            raise bad_argument(
                f"environmentId '{environment_id}' is not an environment version id",
                target="environmentId",
            )
        if "workspaces" in low and seg[low.index("workspaces") + 1].lower() != ws.name.lower():
            raise bad_argument(
                f"environmentId '{environment_id}' belongs to another workspace",
                target="environmentId",
            )
        env = self.store.environments.get(environment_key(ws.name, seg[-3], seg[-1]))
        if env is None or not env["request_properties"].get("image"):
            raise bad_argument(
                f"Environment '{seg[-3]}' version '{seg[-1]}' with an image was not found in workspace '{ws.name}'.",
                target="environmentId",
            )
        return str(env["request_properties"]["image"])

    @staticmethod
    def _refuse_unless_endpoint_settled(ep: Record, *, update: bool) -> None:
        """Azure refuses a deployment PUT while its endpoint's provisioningState is not terminal,
        even just after the endpoint's own operation reported success (Azure/azure-sdk-for-net#36961)."""
        state = str(ep["provisioning_state"])
        if state not in TERMINAL_STATES:
            raise endpoint_not_ready(ep["name"], state, update=update)

    async def put_deployment(
        self, ws: WorkspaceConfig, endpoint: str, name: str, body: dict[str, Any]
    ) -> web.Response:
        ep = self._endpoint(ws, endpoint)
        key = deployment_key(ws.name, endpoint, name)
        self._refuse_unless_endpoint_settled(ep, update=key in self.store.deployments)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise bad_argument("properties is required", target="properties")
        image = self._environment_image(ws, props.get("environmentId"))
        try:
            ref = parse_image_ref(image)
        except ImageReferenceError as error:
            raise bad_argument(str(error), target="environmentId") from error
        existing = self.store.deployments.get(key)
        if existing is not None and self.provisioner.running_operation(
            existing.get("operation_id")
        ):
            raise conflict(
                f"Deployment '{name}' has an operation in progress; retry when it finishes."
            )
        # What the region's replica says the moment the request arrives: the audit's evidence.
        lookup = await lookup_image(ws.registry_url, ref, self.provisioner.ssl_context)
        existing = self.store.deployments.get(key)  # re-read after the await
        if existing is not None and self.provisioner.running_operation(
            existing.get("operation_id")
        ):
            raise conflict(
                f"Deployment '{name}' has an operation in progress; retry when it finishes."
            )
        # The endpoint may have started changing (or been deleted) during the look-up too.
        ep = self._endpoint(ws, endpoint)
        self._refuse_unless_endpoint_settled(ep, update=existing is not None)
        now = now_iso()
        kind = "deployment_update" if existing else "deployment_create"
        op = self.provisioner.start(
            kind, ws, ep["name"], name if existing is None else existing["name"]
        )
        dep: Record = existing or {
            "name": name,
            "endpoint": ep["name"],
            "workspace": ws.name,
            "created_at": now,
            "serving": None,
            "logs": [],
        }
        dep.update(
            tags=body.get("tags") or {},
            sku=body.get("sku") or {"name": "Default", "capacity": 1},
            request_properties={k: v for k, v in props.items() if k != "provisioningState"},
            environment_id=props["environmentId"],
            image=image,
            digest=ref.digest,
            provisioning_state="Updating" if existing else "Creating",
            operation_id=op["id"],
            error=None,
            modified_at=now,
        )
        dep["logs"].append(f"{now} {kind}: pulling container image {image} in {ws.region}")
        self.store.deployments[key] = dep
        self.store.save()
        self.audit.append(
            kind,
            workspace=ws.name,
            region=ws.region,
            endpoint=ep["name"],
            deployment=dep["name"],
            image=image,
            digest=ref.digest,
            image_present_at_create=lookup.present,
            registry_answer=lookup.detail,
        )
        location = f"{self.config.base_url}{ws.arm_id}/onlineEndpoints/{ep['name']}/deployments/{dep['name']}"
        return self._accepted(
            ws, op, deployment_body(ws, dep, self._async_url(ws, dep)), 201, location
        )

    def delete_deployment(self, ws: WorkspaceConfig, endpoint: str, name: str) -> web.Response:
        ep = self._endpoint(ws, endpoint)
        dep = self._deployment(ws, endpoint, name)
        running = self.provisioner.running_operation(dep.get("operation_id"))
        if running is not None and running["kind"] == "deployment_delete":
            return self._accepted(
                ws, running, None, 202, operation_url(self.config.base_url, ws, running["id"])
            )
        weight = (ep.get("traffic") or {}).get(dep["name"], 0)
        if weight > 0:
            raise bad_argument(
                f"Deployment '{dep['name']}' receives {weight}% of endpoint '{endpoint}' traffic; "
                "set its traffic to 0 before deleting it."
            )
        self.provisioner.cancel(dep.get("operation_id"), "the deployment is being deleted")
        op = self.provisioner.start("deployment_delete", ws, ep["name"], dep["name"])
        dep.update(provisioning_state="Deleting", operation_id=op["id"], modified_at=now_iso())
        if dep["name"] in (ep.get("traffic") or {}):
            ep["traffic"] = {k: v for k, v in ep["traffic"].items() if k != dep["name"]}
        self.store.save()
        self.audit.append(
            "deployment_deleted",
            workspace=ws.name,
            region=ws.region,
            endpoint=ep["name"],
            deployment=dep["name"],
            image=dep["image"],
            digest=dep["digest"],
        )
        return self._accepted(ws, op, None, 202, operation_url(self.config.base_url, ws, op["id"]))

    def get_logs(
        self, ws: WorkspaceConfig, endpoint: str, name: str, body: dict[str, Any]
    ) -> web.Response:
        dep = self._deployment(ws, endpoint, name)
        tail = body.get("tail")
        lines = list(dep.get("logs") or [])
        if isinstance(tail, int) and tail > 0:
            lines = lines[-tail:]
        return web.json_response({"content": "\n".join(lines) + ("\n" if lines else "")})

    # -- environments -------------------------------------------------------------

    def get_environment(self, ws: WorkspaceConfig, name: str, version: str) -> web.Response:
        env = self.store.environments.get(environment_key(ws.name, name, version))
        if env is None:
            raise not_found(
                "workspaces/environments/versions", f"{name}/{version}", f"workspace '{ws.name}'"
            )
        return web.json_response(environment_body(ws, env))

    def put_environment(
        self, ws: WorkspaceConfig, name: str, version: str, body: dict[str, Any]
    ) -> web.Response:
        props = body.get("properties")
        if not isinstance(props, dict):
            raise bad_argument("properties is required", target="properties")
        key = environment_key(ws.name, name, version)
        existing = self.store.environments.get(key)
        now = now_iso()
        env: Record = existing or {"name": name, "version": version, "created_at": now}
        env.update(request_properties=props, modified_at=now)
        self.store.environments[key] = env
        self.store.save()
        location = f"{self.config.base_url}{ws.arm_id}/environments/{name}/versions/{version}"
        return web.json_response(
            environment_body(ws, env),
            status=200 if existing else 201,
            headers={"Location": location},
        )
