"""The ARM emulator's aiohttp application: bearer check, routes, and the clock that completes operations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from devenv.arm.arm_routes import ArmRoutes
from devenv.arm.audit import AuditLog
from devenv.arm.config import ArmConfig
from devenv.arm.errors import ArmError, arm_error_body, arm_error_response
from devenv.arm.knobs import DeploymentKnobs
from devenv.arm.provisioning import Provisioner
from devenv.arm.routing import TrafficRotations
from devenv.arm.scoring import ScoringRoutes
from devenv.arm.store import ArmStore, endpoint_key
from devenv.tls import TlsFiles

log = logging.getLogger("devenv.arm")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TICK_S = 0.1
# Scoring checks the endpoint key itself; health is what launchers poll before anyone has a token.
OPEN_PREFIXES = ("/score/", "/emulator/health")


@web.middleware
async def arm_errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(OPEN_PREFIXES):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return web.json_response(
                arm_error_body(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing or is not a Bearer token.",
                ),
                status=401,
                headers={
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common"'
                },
            )
    try:
        return await handler(request)
    except ArmError as error:
        return arm_error_response(error)
    except web.HTTPException:
        raise
    except Exception as error:  # an emulator bug must still answer like ARM, and be logged
        log.exception("internal error on %s %s", request.method, request.path)
        return arm_error_response(
            ArmError(500, "InternalServerError", f"{type(error).__name__}: {error}")
        )


def build_app(config: ArmConfig, tls: TlsFiles) -> web.Application:
    store = ArmStore(config.state_path)
    audit = AuditLog(config.audit_path)
    provisioner = Provisioner(config, store, audit, tls.client_context())
    # Shared so an ARM traffic change restarts the scoring route's round-robin.
    rotations = TrafficRotations()
    arm = ArmRoutes(config, store, audit, provisioner, rotations)
    scoring = ScoringRoutes(config, store, rotations)
    knobs = DeploymentKnobs(config, store, audit)

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "workspaces": [ws.name for ws in config.workspaces]}
        )

    async def audit_records(_: web.Request) -> web.Response:
        return web.json_response({"records": audit.records()})

    async def operation_reads(request: web.Request) -> web.Response:
        """How often the operation's status was read (0 for an id never read or unknown)."""
        return web.json_response({"reads": arm.operation_reads[request.match_info["op_id"]]})

    async def fail_endpoint(request: web.Request) -> web.Response:
        """Put an endpoint in the `Failed` state an Azure endpoint can end in (e.g. when its
        identity cannot pull); a later PUT of the endpoint provisions it again, as in Azure."""
        key = endpoint_key(request.match_info["workspace"], request.match_info["endpoint"])
        ep = store.endpoints.get(key)
        if ep is None:
            return web.json_response({"error": {"code": "NotFound"}}, status=404)
        ep.update(provisioning_state="Failed", operation_id=None, settles_at=None)
        store.save()
        return web.json_response({"provisioningState": "Failed"})

    async def clock(_: web.Application) -> AsyncIterator[None]:
        async def tick() -> None:
            while True:
                try:
                    await provisioner.settle_due()
                except Exception:
                    log.exception("settling operations failed")
                await asyncio.sleep(TICK_S)

        task = asyncio.create_task(tick())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = web.Application(middlewares=[arm_errors_and_auth], client_max_size=8 * 1024 * 1024)
    app.router.add_get("/emulator/health", health)
    app.router.add_get("/emulator/audit", audit_records)
    app.router.add_get("/emulator/operations/{op_id}", operation_reads)
    app.router.add_post("/emulator/endpoints/{workspace}/{endpoint}/fail", fail_endpoint)
    app.router.add_post(
        "/emulator/deployments/{workspace}/{endpoint}/{deployment}/scoring",
        knobs.set_scoring_fault,
    )
    app.router.add_post(
        "/emulator/deployments/{workspace}/{endpoint}/{deployment}/fail", knobs.fail_deployment
    )
    app.router.add_post("/score/{workspace}/{endpoint}", scoring.score)
    app.router.add_route("*", "/subscriptions/{tail:.*}", arm.dispatch)
    app.cleanup_ctx.append(clock)
    return app
