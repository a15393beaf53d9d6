"""ARM-shaped error answers: `{"error": {"code", "message", ...}}` with the status Azure uses."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class ArmError(Exception):
    """Raised by a handler; the app turns it into an ARM error response."""

    def __init__(self, status: int, code: str, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target


def arm_error_body(code: str, message: str, *, target: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "details": [], "additionalInfo": []}
    if target is not None:
        error["target"] = target
    return {"error": error}


def arm_error_response(error: ArmError) -> web.Response:
    return web.json_response(
        arm_error_body(error.code, error.message, target=error.target), status=error.status
    )


def not_found(kind: str, name: str, parent: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.MachineLearningServices/{kind}/{name}' under {parent} was not found.",
    )


def bad_argument(message: str, *, target: str | None = None) -> ArmError:
    return ArmError(400, "BadArgument", message, target=target)


def conflict(message: str) -> ArmError:
    return ArmError(409, "Conflict", message)


def endpoint_not_ready(endpoint: str, state: str, *, update: bool) -> ArmError:
    """A deployment PUT on an endpoint whose provisioningState is not terminal.

    The create message is Azure ML's, word for word, from Azure/azure-sdk-for-net#36961
    ("Cannot create a deployment in endpoint {endpointName} because it is in {state}
    provisioning state.", seen just after the endpoint's operation had reported success); the
    update wording is this emulator's. The stored copy of that issue ends before its status
    line, so the status is ARM's rule for a write that meets a resource with an operation in
    progress: 409 Conflict (Azure/azure-resource-manager-rpc, v1.0/Addendum.md, "Creating/Updating
    using PUT"). A 409 also tells clients to retry later, which is the remedy here.
    """
    verb = "update a deployment" if update else "create a deployment"
    return conflict(
        f"Cannot {verb} in endpoint {endpoint} because it is in {state} provisioning state."
    )
