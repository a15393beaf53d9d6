"""The JSON bodies the emulator answers for workspaces, endpoints, deployments, environments and operations.

Field names and shapes follow real ARM answers (see shared/facts/azure-ml-arm-recorded-create.json).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from devenv.arm.config import WorkspaceConfig
from devenv.arm.store import Record

PROVIDER = "Microsoft.MachineLearningServices"
# What ARM prints as endTime while an operation runs.
NOT_ENDED = "0001-01-01T00:00:00+00:00"
LOCAL_PRINCIPAL = "00000000-0000-0000-0000-000000000000"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def workspace_guid(ws: WorkspaceConfig) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ws.arm_id.lower()))


def workspace_body(ws: WorkspaceConfig) -> dict[str, Any]:
    return {
        "id": ws.arm_id,
        "name": ws.name,
        "type": f"{PROVIDER}/workspaces",
        "location": ws.region,
        "tags": {},
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "properties": {
            "friendlyName": ws.name,
            "provisioningState": "Succeeded",
            "workspaceId": workspace_guid(ws),
            "publicNetworkAccess": "Enabled",
            "v1LegacyMode": False,
        },
        "identity": {
            "type": "SystemAssigned",
            "principalId": LOCAL_PRINCIPAL,
            "tenantId": LOCAL_PRINCIPAL,
        },
    }


def operation_url(base_url: str, ws: WorkspaceConfig, operation_id: str) -> str:
    return (
        f"{base_url}/subscriptions/{ws.subscription_id}/providers/{PROVIDER}"
        f"/locations/{ws.region}/mfeOperationsStatus/{operation_id}"
    )


def operation_body(ws: WorkspaceConfig, op: Record) -> dict[str, Any]:
    running = op["status"] == "Updating"
    span = max(op["due_at"] - op["started_at"], 1e-6)
    progress = min(1.0, max(0.0, (time.time() - op["started_at"]) / span)) if running else 1.0
    body: dict[str, Any] = {
        "id": (
            f"/subscriptions/{ws.subscription_id}/providers/{PROVIDER}"
            f"/locations/{ws.region}/mfeOperationsStatus/{op['id']}"
        ),
        "name": op["id"],
        "status": op["status"],
        "startTime": iso(op["started_at"]),
        "endTime": NOT_ENDED if running else iso(op["ended_at"]),
        "percentComplete": round(progress * 100.0, 1),
    }
    if op.get("error"):
        body["error"] = op["error"]
    return body


def endpoint_body(ws: WorkspaceConfig, ep: Record, async_url: str | None) -> dict[str, Any]:
    arm_id = f"{ws.arm_id}/onlineEndpoints/{ep['name']}"
    inner = dict(ep.get("user_properties") or {})
    inner["azureml.onlineendpointid"] = arm_id.lower()
    if async_url:
        inner["AzureAsyncOperationUri"] = async_url
    scoring_uri = ep.get("scoring_uri")
    return {
        "id": arm_id,
        "name": ep["name"],
        "type": f"{PROVIDER}/workspaces/onlineEndpoints",
        "location": ws.region,
        "kind": "Managed",
        "tags": ep.get("tags") or {},
        "identity": {
            "type": (ep.get("identity") or {}).get("type", "SystemAssigned"),
            "principalId": LOCAL_PRINCIPAL,
            "tenantId": LOCAL_PRINCIPAL,
            **(
                {"userAssignedIdentities": ep["identity"]["userAssignedIdentities"]}
                if (ep.get("identity") or {}).get("userAssignedIdentities")
                else {}
            ),
        },
        "properties": {
            "description": ep.get("description"),
            "properties": inner,
            "scoringUri": scoring_uri,
            "swaggerUri": scoring_uri.rsplit("/", 1)[0] + "/swagger.json" if scoring_uri else None,
            "authMode": ep["auth_mode"],
            "provisioningState": ep["provisioning_state"],
            "compute": None,
            "traffic": ep.get("traffic") or {},
            "mirrorTraffic": ep.get("mirror_traffic") or {},
            "publicNetworkAccess": "Enabled",
        },
        "systemData": {
            "createdAt": ep["created_at"],
            "createdBy": "georollout-local",
            "lastModifiedAt": ep["modified_at"],
        },
    }


_PROBE = {
    "failureThreshold": 30,
    "successThreshold": 1,
    "timeout": "PT2S",
    "period": "PT10S",
    "initialDelay": "PT10S",
}


def deployment_body(ws: WorkspaceConfig, dep: Record, async_url: str | None) -> dict[str, Any]:
    arm_id = f"{ws.arm_id}/onlineEndpoints/{dep['endpoint']}/deployments/{dep['name']}"
    sent = dep.get("request_properties") or {}
    inner = dict(sent.get("properties") or {})
    if async_url:
        inner["AzureAsyncOperationUri"] = async_url
    properties: dict[str, Any] = {
        "description": sent.get("description"),
        "properties": inner,
        "environmentId": dep["environment_id"],
        "environmentVariables": sent.get("environmentVariables") or {},
        "scaleSettings": sent.get("scaleSettings") or {"scaleType": "Default"},
        "requestSettings": sent.get("requestSettings")
        or {
            "maxQueueWait": "PT0S",
            "requestTimeout": "PT5S",
            "maxConcurrentRequestsPerInstance": 1,
        },
        "modelMountPath": sent.get("modelMountPath"),
        "appInsightsEnabled": bool(sent.get("appInsightsEnabled", False)),
        "livenessProbe": sent.get("livenessProbe") or dict(_PROBE),
        "readinessProbe": sent.get("readinessProbe") or dict(_PROBE),
        "provisioningState": dep["provisioning_state"],
        "instanceType": sent.get("instanceType") or "Standard_DS3_v2",
        "model": sent.get("model"),
        "egressPublicNetworkAccess": "Enabled",
        "dataCollector": None,
        "endpointComputeType": "Managed",
    }
    if sent.get("codeConfiguration"):
        properties["codeConfiguration"] = sent["codeConfiguration"]
    sku = dep.get("sku") or {}
    return {
        "id": arm_id,
        "name": dep["name"],
        "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
        "location": ws.region,
        "kind": "Managed",
        "tags": dep.get("tags") or {},
        "sku": {
            "name": sku.get("name", "Default"),
            "tier": "Standard",
            "capacity": int(sku.get("capacity", 1)),
        },
        "properties": properties,
        "systemData": {
            "createdAt": dep["created_at"],
            "createdBy": "georollout-local",
            "lastModifiedAt": dep["modified_at"],
        },
    }


def environment_body(ws: WorkspaceConfig, env: Record) -> dict[str, Any]:
    sent = env.get("request_properties") or {}
    return {
        "id": f"{ws.arm_id}/environments/{env['name']}/versions/{env['version']}",
        "name": env["version"],
        "type": f"{PROVIDER}/workspaces/environments/versions",
        "properties": {
            "description": sent.get("description"),
            "tags": sent.get("tags") or {},
            "properties": sent.get("properties") or {},
            "isArchived": bool(sent.get("isArchived", False)),
            "isAnonymous": bool(sent.get("isAnonymous", False)),
            "environmentType": "UserCreated",
            "image": sent.get("image"),
            "condaFile": sent.get("condaFile"),
            "osType": sent.get("osType") or "Linux",
            "provisioningState": "Succeeded",
        },
        "systemData": {
            "createdAt": env["created_at"],
            "createdBy": "georollout-local",
            "lastModifiedAt": env["modified_at"],
        },
    }
