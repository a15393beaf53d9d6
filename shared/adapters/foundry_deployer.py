"""The Foundry deployer: managed online endpoints and deployments per region, through azure-ai-ml.

Every call starts or inspects an operation and returns at once: a deployment
takes minutes and no function invocation waits for it. Later steps look at
the deployment again (no SDK poller thread reads it meanwhile: `sdk_pollers`).
azure-ai-ml is synchronous, so calls run in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import aiohttp
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    Environment,
    IdentityConfiguration,
    ManagedIdentityConfiguration,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
)
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient

from shared.adapters.sdk_pollers import without_poller_thread
from shared.config import WorkspaceRef
from shared.errors import GeorolloutError, RefusedError, TransientError

PUBLIC_ARM_ENDPOINT = "https://management.azure.com/"
_ENVIRONMENT_ID = re.compile(r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.I)


class DeployerError(GeorolloutError):
    """An ARM call failed (`status`: ARM's HTTP status, None when there was no answer)."""

    code: ClassVar[str] = "deployer_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeploymentRefusedError(DeployerError, RefusedError):
    """ARM refused the request itself (a 4xx other than 404, 408, 409 and 429)."""

    code: ClassVar[str] = "deployment_refused"


class DeployerUnavailableError(DeployerError, TransientError):
    """No answer, throttling, 5xx, or "busy now" (409): the next step tries again."""

    code: ClassVar[str] = "deployer_unavailable"


# Azure answers these while the resource is busy or the caller should slow down.
_RETRIED_STATUSES = frozenset({404, 408, 409, 429})


def _failure(error: AzureError) -> DeployerError:
    """The one place that classifies what ARM answered: refused for good, or not now."""
    status = error.status_code if isinstance(error, HttpResponseError) else None
    if status is not None and 400 <= status < 500 and status not in _RETRIED_STATUSES:
        return DeploymentRefusedError(_error_text(error), status=status)
    return DeployerUnavailableError(_error_text(error), status=status)


class ProvisioningState(StrEnum):
    MISSING = "missing"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class EndpointStatus:
    state: ProvisioningState
    traffic: Mapping[str, int] = field(default_factory=dict)
    scoring_uri: str | None = None
    deployments: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploymentStatus:
    state: ProvisioningState
    error: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Started:
    """A long-running operation ARM accepted: where its status is read (kept so a later step
    can read Azure's error) and how soon ARM asks to be polled (its Retry-After)."""

    operation_url: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    status: int | None
    body: str
    # False when the request never left: ARM did not give the scoring URI or key. That
    # says nothing about the deployment (a watch does not count it as a failed check).
    sent: bool = True


def _state(provisioning_state: str | None) -> ProvisioningState:
    value = (provisioning_state or "").lower()
    if value == "succeeded":
        return ProvisioningState.SUCCEEDED
    if value in ("failed", "canceled", "cancelled"):
        return ProvisioningState.FAILED
    return ProvisioningState.IN_PROGRESS


def _error_text(error: AzureError) -> str:
    if isinstance(error, HttpResponseError) and error.error is not None:
        code = error.error.code or "Error"
        return f"{code}: {error.error.message}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class FoundryDeployer:
    """One MLClient per region's workspace; blue-green steps as separate, non-blocking calls."""

    def __init__(
        self,
        workspaces: Mapping[str, WorkspaceRef],
        *,
        credential: TokenCredential,
        arm_endpoint: str = PUBLIC_ARM_ENDPOINT,
        ca_bundle: str | None = None,
        endpoint_identities: Mapping[str, str] | None = None,
        smoke_timeout_s: float = 5.0,
    ) -> None:
        self._workspaces = dict(workspaces)
        self._credential = credential
        self._arm_endpoint = arm_endpoint.rstrip("/") + "/"
        self._ca_bundle = ca_bundle
        self._identities = dict(endpoint_identities or {})
        self._smoke_timeout_s = smoke_timeout_s
        self._clients: dict[str, MLClient] = {}
        self._operation_client: ARMPipelineClient[HttpRequest, Any] | None = None

    # -- clients ---------------------------------------------------------

    def _client(self, region: str) -> MLClient:
        client = self._clients.get(region)
        if client is None:
            ws = self._workspaces[region]
            options: dict[str, Any] = {"show_progress": False, "enable_telemetry": False}
            if self._ca_bundle:
                options["connection_verify"] = self._ca_bundle
            if self._arm_endpoint != PUBLIC_ARM_ENDPOINT:
                # A sovereign or local cloud: azure-ai-ml then sends every ARM call there.
                # azure-ai-ml registers a cloud name once per process and ignores later
                # metadata under the same name, so the name is derived from the URL.
                options["cloud"] = (
                    "GeoRollout-" + hashlib.sha256(self._arm_endpoint.encode()).hexdigest()[:10]
                )
                options["cloud_metadata"] = {
                    "azure_portal": self._arm_endpoint,
                    "resource_manager": self._arm_endpoint,
                    "active_directory": "https://login.microsoftonline.com/",
                    "aml_resource_id": self._arm_endpoint,
                    "storage_endpoint": "core.windows.net",
                    "registry_discovery_endpoint": self._arm_endpoint,
                }
            client = MLClient(
                self._credential, ws.subscription_id, ws.resource_group, ws.name, **options
            )
            self._clients[region] = client
        return client

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # A begin_* hands back a poller: this adapter reads the operation itself when its
        # step is due, so the poller gets no thread polling it (see sdk_pollers).
        return await asyncio.to_thread(without_poller_thread, fn, *args, **kwargs)

    # -- endpoints -------------------------------------------------------

    async def endpoint_status(
        self, region: str, endpoint: str, *, with_deployments: bool = True
    ) -> EndpointStatus:
        """The endpoint's state and traffic; `with_deployments` lists its deployments too,
        one more ARM call that only a traffic shift needs."""
        client = self._client(region)
        try:
            found = await self._run(client.online_endpoints.get, endpoint)
        except ResourceNotFoundError:
            return EndpointStatus(ProvisioningState.MISSING)
        except AzureError as error:
            raise _failure(error) from error
        deployments: list[str] = []
        if with_deployments:
            try:
                deployments = await self._run(
                    lambda: [d.name for d in client.online_deployments.list(endpoint)]
                )
            except AzureError as error:
                raise _failure(error) from error
        return EndpointStatus(
            _state(found.provisioning_state),
            {str(k): int(v) for k, v in (found.traffic or {}).items()},
            found.scoring_uri,
            tuple(deployments),
        )

    async def begin_create_endpoint(self, region: str, endpoint: str, *, auth_mode: str) -> Started:
        identity = None
        if region in self._identities:
            identity = IdentityConfiguration(
                type="user_assigned",
                user_assigned_identities=[
                    ManagedIdentityConfiguration(resource_id=self._identities[region])
                ],
            )
        entity = ManagedOnlineEndpoint(name=endpoint, auth_mode=auth_mode, identity=identity)
        try:
            poller = await self._run(
                self._client(region).online_endpoints.begin_create_or_update, entity
            )
        except AzureError as error:
            raise _failure(error) from error
        return _started(poller)

    async def begin_set_traffic(
        self, region: str, endpoint: str, traffic: Mapping[str, int]
    ) -> Started:
        """Shift traffic with a full endpoint PUT (the only way ARM accepts it)."""
        client = self._client(region)
        try:
            found = await self._run(client.online_endpoints.get, endpoint)
            found.traffic = dict(traffic)
            poller = await self._run(client.online_endpoints.begin_create_or_update, found)
        except AzureError as error:
            raise _failure(error) from error
        return _started(poller)

    # -- deployments -----------------------------------------------------

    async def begin_create_deployment(
        self,
        region: str,
        endpoint: str,
        name: str,
        *,
        image: str,
        instance_type: str,
        instance_count: int,
    ) -> Started:
        """Start creating `name` with 0% traffic."""
        deployment = ManagedOnlineDeployment(
            name=name,
            endpoint_name=endpoint,
            environment=Environment(image=image),
            instance_type=instance_type,
            instance_count=instance_count,
        )
        try:
            poller = await self._run(
                self._client(region).online_deployments.begin_create_or_update, deployment
            )
        except AzureError as error:
            raise _failure(error) from error
        return _started(poller)

    async def deployment_status(
        self,
        region: str,
        endpoint: str,
        name: str,
        *,
        operation_url: str | None,
        with_image: bool = False,
    ) -> DeploymentStatus:
        """Provisioning state (and Azure's error text when it failed); `with_image` costs one
        more GET, so the reconcile step, which polls this, leaves it off."""
        client = self._client(region)
        try:
            found = await self._run(client.online_deployments.get, name, endpoint)
        except ResourceNotFoundError:
            return DeploymentStatus(ProvisioningState.MISSING)
        except AzureError as error:
            raise _failure(error) from error
        state = _state(found.provisioning_state)
        image = await self._image_of(client, found.environment) if with_image else None
        if state is not ProvisioningState.FAILED:
            return DeploymentStatus(state, image=image)
        # The resource only says "Failed"; Azure's reason is on the operation.
        error_text = await self._operation_error(operation_url) if operation_url else None
        return DeploymentStatus(
            state, error=error_text or "deployment provisioning failed", image=image
        )

    async def _image_of(self, client: MLClient, environment: Any) -> str | None:
        """The image a deployment runs. ARM answers a deployment with its environment's id only
        (`.../environments/<name>/versions/<v>`), so the image takes one more GET."""
        if environment is None or isinstance(environment, Environment):
            return getattr(environment, "image", None)
        match = _ENVIRONMENT_ID.search(str(environment))
        if match is None:
            return None
        try:
            found = await self._run(
                client.environments.get, match["name"], version=match["version"]
            )
        except AzureError:
            return None  # the image is evidence, not a verdict: no reason to fail the status
        image = getattr(found, "image", None)
        return str(image) if image else None

    async def begin_delete_deployment(self, region: str, endpoint: str, name: str) -> Started:
        try:
            poller = await self._run(
                self._client(region).online_deployments.begin_delete, name, endpoint
            )
        except ResourceNotFoundError:
            return Started()
        except AzureError as error:
            raise _failure(error) from error
        return _started(poller)

    async def smoke_test(
        self, region: str, endpoint: str, name: str, request: Mapping[str, Any]
    ) -> SmokeResult:
        """POST the smoke request to the scoring URI, pinned to one deployment by header.

        Sent directly rather than through `online_endpoints.invoke`, which keeps
        headers in a module-level dict that leaks into later calls.
        """
        client = self._client(region)
        try:
            found = await self._run(client.online_endpoints.get, endpoint)
            keys = await self._run(client.online_endpoints.get_keys, endpoint)
        except AzureError as error:
            return SmokeResult(False, None, _error_text(error), sent=False)
        secret = getattr(keys, "primary_key", None) or getattr(keys, "access_token", None)
        if not found.scoring_uri or not secret:
            return SmokeResult(False, None, "endpoint has no scoring URI or key yet", sent=False)
        headers = {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            "azureml-model-deployment": name,
        }
        context = (
            ssl.create_default_context(cafile=self._ca_bundle)
            if self._ca_bundle
            else ssl.create_default_context()
        )
        # Azure ML's own scoring timeout defaults to 5 s (request_settings.request_timeout_ms).
        timeout = aiohttp.ClientTimeout(total=self._smoke_timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    found.scoring_uri, data=json.dumps(dict(request)), headers=headers, ssl=context
                ) as response,
            ):
                body = await response.text()
                return SmokeResult(200 <= response.status < 300, response.status, body[:2000])
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return SmokeResult(False, None, f"{type(error).__name__}: {error}")

    async def check_workspace(self, region: str) -> str | None:
        """None when the workspace answers; otherwise what is wrong."""
        try:
            await self._run(self._client(region).workspaces.get, self._workspaces[region].name)
        except AzureError as error:
            return _error_text(error)
        except Exception as error:  # azure-ai-ml wraps some failures in its own exception types
            return f"{type(error).__name__}: {error}"
        return None

    async def _operation_error(self, url: str) -> str | None:
        def fetch() -> str | None:
            client = self._operation_pipeline()
            response = client.send_request(HttpRequest("GET", url))
            if response.status_code != 200:
                return None
            body = response.json()
            error = body.get("error") or {}
            if not error:
                return None
            return f"{error.get('code', 'Error')}: {error.get('message', '')}"

        try:
            result: str | None = await asyncio.to_thread(fetch)
            return result
        except AzureError:
            return None

    def _operation_pipeline(self) -> ARMPipelineClient[HttpRequest, Any]:
        if self._operation_client is None:
            scope = self._arm_endpoint + ".default"
            options: dict[str, Any] = {}
            if self._ca_bundle:
                options["connection_verify"] = self._ca_bundle
            self._operation_client = ARMPipelineClient(
                base_url=self._arm_endpoint,
                policies=[
                    RetryPolicy(retry_total=2),
                    BearerTokenCredentialPolicy(self._credential, scope),
                ],
                **options,
            )
        return self._operation_client

    def close(self) -> None:
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()
        self._clients.clear()


def _started(poller: Any) -> Started:
    """What a started LRO's poller knows: its Azure-AsyncOperation URL and ARM's Retry-After.

    azure-core keeps both only on the polling method (its operation object and the
    initial response); if a future version moves them, we lose the error detail and
    poll at GEOROLLOUT_DEPLOY_POLL_SECONDS, never the deployment.
    """
    try:
        method = poller.polling_method()
    except Exception:
        return Started()
    try:
        url = method._operation.get_polling_url()
    except Exception:
        url = None
    try:
        headers = method._initial_response.http_response.headers
    except Exception:
        headers = {}
    return Started(str(url) if url else None, retry_after_s(headers))


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """ARM's wish for the next poll, in seconds: `retry-after-ms`/`x-ms-retry-after-ms`
    (what azure-core honours first) or `Retry-After` in seconds; None when absent or an
    HTTP date (ARM sends seconds)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (
        ("retry-after-ms", 0.001),
        ("x-ms-retry-after-ms", 0.001),
        ("retry-after", 1),
    ):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


__all__ = [
    "DeployerError",
    "DeployerUnavailableError",
    "DeploymentRefusedError",
    "DeploymentStatus",
    "EndpointStatus",
    "FoundryDeployer",
    "ProvisioningState",
    "SmokeResult",
    "Started",
    "WorkspaceRef",
]
