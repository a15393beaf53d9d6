"""georollout's triggers. Each binds one trigger to one call into `shared.entrypoints`; no logic here."""

import azure.functions as func

from shared.entrypoints import eventgrid_triggers, http_routes, startup, timer_triggers

startup.report_configuration()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.event_grid_trigger(arg_name="event")
async def on_image_pushed(event: func.EventGridEvent) -> None:
    """ACR `ImagePushed` events from the registry's Event Grid system topic."""
    await eventgrid_triggers.image_pushed(event)


@app.event_grid_trigger(arg_name="event")
async def on_rollout_event(event: func.EventGridEvent) -> None:
    """georollout's own events (CloudEvents) from its topic: the completion function."""
    await eventgrid_triggers.rollout_event(event)


@app.route(route="hooks/acr", methods=["POST"])
async def acr_hook(req: func.HttpRequest) -> func.HttpResponse:
    """ACR webhooks (incl. regional ones) and Distribution notification envelopes."""
    return await http_routes.acr_hook(req)


@app.route(route="hooks/build", methods=["POST"])
async def build_hook(req: func.HttpRequest) -> func.HttpResponse:
    """Build systems' signed notices (Standard Webhooks) after `docker push`."""
    return await http_routes.build_hook(req)


@app.route(route="rollouts", methods=["GET"])
async def list_rollouts(req: func.HttpRequest) -> func.HttpResponse:
    return await http_routes.list_rollouts(req)


@app.route(route="rollouts/{id}", methods=["GET"])
async def get_rollout(req: func.HttpRequest) -> func.HttpResponse:
    return await http_routes.get_rollout(req)


@app.route(route="rollouts/{id}/{action}", methods=["POST"])
async def rollout_action(req: func.HttpRequest) -> func.HttpResponse:
    """Operators steer a rollout: approve, hold, resume, retry, rollback."""
    return await http_routes.rollout_action(req)


@app.route(route="stats", methods=["GET"])
async def replication_stats(req: func.HttpRequest) -> func.HttpResponse:
    """Each secondary region's observed replication latency and throughput."""
    return await http_routes.replication_stats(req)


@app.route(route="dashboard", methods=["GET"])
async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The operators' page: rollouts by region, a timeline, replication latency, ETAs."""
    return await http_routes.dashboard(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: statuses only."""
    return await http_routes.health(req)


@app.route(route="health/detail", methods=["GET"])
async def health_detail(req: func.HttpRequest) -> func.HttpResponse:
    """The same checks with messages, endpoints and ids: the app's default (function key) auth."""
    return await http_routes.health_detail(req)


@app.timer_trigger(schedule="%GEOROLLOUT_PROBE_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def probe_replicas(timer: func.TimerRequest) -> None:
    """Probes replicas that are due and moves every active rollout on (the safety net)."""
    await timer_triggers.probe_replicas(timer)
