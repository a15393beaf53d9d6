"""The `georollout` command (contract: "Command line: georollout"): `notify`, `wait`, `status`,
`watch` and the operator actions `approve`, `hold`, `resume`, `retry`, `rollback`.

Exit statuses: 0 done (the notice accepted, the rollout live, the status shown, the action
accepted); 1 the rollout ended without going live (`wait`, `watch`) or the action does not
fit the rollout's state (the API's 409); 2 a usage or configuration error (arguments,
IMAGE_OR_ID, the secret); 3 the API refused the request otherwise or could not be reached;
124 the `wait` or `watch` timeout passed first. Errors go to stderr.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from georollout_cli.api import (
    ROLLOUT_ACTIONS,
    ApiClient,
    ApiConfigError,
    ApiError,
    ApiUnreachable,
    error_text,
)
from georollout_cli.durations import parse_duration
from georollout_cli.images import ImageRefError, RolloutRef, parse_image_or_id, parse_pushed_image
from georollout_cli.lookup import AmbiguousRolloutError, find_rollout, find_rollout_id
from georollout_cli.notice import (
    BUILD_HOOK_PATH,
    SECRET_ENV,
    BuildInfo,
    check_secret,
    notice_body,
    send_notice,
)
from georollout_cli.render import Renderer, renderer_for
from georollout_cli.waiting import wait_for_rollout
from shared.intake.validation import TAG
from shared.intake.webhook_signature import InvalidSecretError

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130
DEFAULT_LIST_LIMIT = 50
ACTOR_ENV = "GEOROLLOUT_ACTOR"
# The first sentence of each operator action's help (the rest is shared: `_ACTION_HELP`).
ACTION_SUMMARIES = {
    "approve": "Approve the rollout of ID: let it deploy.",
    "hold": "Hold the rollout of ID: it moves on no further until resumed.",
    "resume": "Resume the held rollout of ID.",
    "retry": "Retry what failed in the rollout of ID.",
    "rollback": "Roll the rollout of ID back.",
}


class UsageProblem(click.ClickException):
    """Bad input or configuration the user can fix (exit 2)."""

    exit_code = EXIT_USAGE


class ApiProblem(click.ClickException):
    """The API refused or could not be reached (exit 3)."""

    exit_code = EXIT_API


class Duration(click.ParamType[float]):
    """A duration option (`30m`, `90s`, `1h`), in seconds, at least `minimum`."""

    name = "duration"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if seconds < self.minimum:
            self.fail(f"{value!r} is shorter than {self.minimum:g}s", param, ctx)
        return seconds


def _client(environ: Mapping[str, str] | None = None) -> ApiClient:
    try:
        return ApiClient.from_environment(environ)
    except ApiConfigError as error:
        raise UsageProblem(str(error)) from None


def _ref(text: str) -> RolloutRef:
    try:
        return parse_image_or_id(text)
    except ImageRefError as error:
        raise UsageProblem(str(error)) from None


def _stdout_renderer() -> Renderer:
    return renderer_for(sys.stdout, sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Roll AI model images out across Azure regions with georollout.

    Talks to GEOROLLOUT_URL (default http://127.0.0.1:7071), with GEOROLLOUT_FUNCTION_KEY
    as x-functions-key when set. Exit status: 0 done, 1 the rollout ended without going
    live (wait) or the action does not fit the rollout's state (approve, hold, resume,
    retry, rollback), 2 usage or configuration error, 3 the API refused otherwise or was
    unreachable, 124 the wait timed out.
    """


@cli.command()
@click.argument("image")
@click.option(
    "--tag", "tags", multiple=True, metavar="T", help="A tag pushed with it (repeatable)."
)
@click.option("--build-url", metavar="U", help="The build's URL.")
@click.option("--commit", metavar="C", help="The commit built.")
@click.option("--system", metavar="S", help="The build system, e.g. github-actions.")
@click.option("--id", "build_id", metavar="I", help="The build's id in that system.")
@click.option("--source", metavar="SRC", help="The source repository's URL.")
def notify(
    image: str,
    tags: tuple[str, ...],
    build_url: str | None,
    commit: str | None,
    system: str | None,
    build_id: str | None,
    source: str | None,
) -> None:
    """Tell georollout that IMAGE (<login server>/<repository>@sha256:<hex>) was pushed.

    Signs the notice with the secret in GEOROLLOUT_BUILD_WEBHOOK_SECRET (whsec_...) and
    prints the rollout id. Retries an unreachable or failing server a few times.
    """
    try:
        pushed = parse_pushed_image(image)
    except ImageRefError as error:
        raise UsageProblem(str(error)) from None
    for tag in tags:
        if not TAG.fullmatch(tag):
            raise click.BadParameter(
                f"{tag!r} is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})", param_hint="--tag"
            )
    secret = os.environ.get(SECRET_ENV, "")
    if not secret.strip():
        raise UsageProblem(
            f"{SECRET_ENV} is not set: it holds the build webhook secret (whsec_...)"
        )
    try:
        check_secret(secret)
    except InvalidSecretError as error:
        raise UsageProblem(f"{SECRET_ENV}: {error}") from None
    client = _client()
    build = BuildInfo(system=system, id=build_id, url=build_url, commit=commit, source=source)

    def on_retry(attempt: int, delay: float, why: str) -> None:
        click.echo(f"notify: {why}; trying again in {delay:g}s (attempt {attempt + 1})", err=True)

    try:
        response = send_notice(
            client, secret.strip(), notice_body(pushed, tags, build), on_retry=on_retry
        )
    except ApiUnreachable as error:
        raise ApiProblem(f"the build notice was not delivered: {error}") from None
    if response.status != 202:
        raise ApiProblem(
            f"POST {BUILD_HOOK_PATH} answered {response.status}: {error_text(response.body)}"
        )
    body = response.body
    rollout = body.get("rollout") if isinstance(body, dict) else None
    click.echo(rollout if isinstance(rollout, str) else error_text(body))


@cli.command()
@click.argument("image_or_id")
@click.option(
    "--timeout",
    type=Duration(),
    default="30m",
    show_default=True,
    help="Give up (exit 124) after this long, e.g. 90s, 30m, 1h.",
)
@click.option(
    "--interval",
    type=Duration(minimum=0.1),
    default="5s",
    show_default=True,
    help="How often to ask.",
)
def wait(image_or_id: str, timeout: float, interval: float) -> None:
    """Wait until the rollout of IMAGE_OR_ID is live in every region.

    IMAGE_OR_ID: a rollout id, <login server>/<repository>@sha256:<hex>, or
    <login server>/<repository>:<tag> (the newest rollout that tag names). Exits 0 once
    live, 1 when it failed, was rolled back, superseded, timed out or ignored, 124 when
    --timeout passes first. Prints each change while waiting.
    """
    _follow(image_or_id, timeout=timeout, interval=interval, detail_at_end=False)


@cli.command()
@click.argument("image_or_id")
@click.option(
    "--timeout",
    type=Duration(),
    default=None,
    help="Stop watching (exit 124) after this long, e.g. 30m; default: until it ends.",
)
@click.option(
    "--interval",
    type=Duration(minimum=0.1),
    default="2s",
    show_default=True,
    help="How often to ask.",
)
def watch(image_or_id: str, timeout: float | None, interval: float) -> None:
    """Show the rollout of IMAGE_OR_ID region by region, live, until it ends.

    On a terminal: the status view redrawn in place (each region's state, step, traffic,
    timings, what it waits for and the expected arrival of its replica), each change also
    printed above it. Otherwise: a line per change, then the status view once it ended.
    Exits as wait does: 0 live everywhere, 1 ended otherwise, 124 when --timeout passes.
    """
    _follow(
        image_or_id,
        timeout=math.inf if timeout is None else timeout,
        interval=interval,
        detail_at_end=True,
    )


def _follow(image_or_id: str, *, timeout: float, interval: float, detail_at_end: bool) -> None:
    """`wait` and `watch`: follow the rollout until it ends; exit with the outcome's status
    (`detail_at_end`: show the rollout region by region once it ended, where the live view
    did not already leave it on screen)."""
    ref = _ref(image_or_id)
    client = _client()
    renderer = _stdout_renderer()
    try:
        with renderer.waiting() as sink:
            result = wait_for_rollout(client, ref, timeout=timeout, interval=interval, sink=sink)
    except ApiError as error:
        raise ApiProblem(str(error)) from None
    except AmbiguousRolloutError as error:
        raise UsageProblem(str(error)) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    if detail_at_end and result.document is not None and not renderer.live:
        renderer.rollout_detail(result.document)
    renderer.wait_result(result)
    raise click.exceptions.Exit(int(result.outcome))


@cli.command()
@click.argument("image_or_id", required=False)
@click.option("--repository", "-r", metavar="R", help="Only this repository (the list).")
@click.option("--state", "-s", metavar="S", help="Only rollouts in this state (the list).")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    metavar="N",
    help=f"At most N rollouts (the list; default {DEFAULT_LIST_LIMIT}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON as it is.")
def status(
    image_or_id: str | None,
    repository: str | None,
    state: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Where rollouts stand: a table of rollouts, newest first, or with IMAGE_OR_ID that
    rollout region by region with its timings and the builds that announced it."""
    if image_or_id is not None and (repository or state or limit is not None):
        raise click.UsageError(
            "--repository, --state and --limit filter the list: not with IMAGE_OR_ID"
        )
    ref = _ref(image_or_id) if image_or_id is not None else None
    client = _client()
    try:
        if ref is None:
            wanted = limit or DEFAULT_LIST_LIMIT
            documents: list[dict[str, Any]] = []
            for document in client.iter_rollouts(
                repository=repository, state=state, page_size=wanted
            ):
                documents.append(document)
                if len(documents) >= wanted:
                    break
            if as_json:
                click.echo(json.dumps({"rollouts": documents}, indent=2))
            else:
                _stdout_renderer().rollout_list(documents)
            return
        found = find_rollout(client, ref)
    except (ApiError, ApiUnreachable) as error:
        raise ApiProblem(str(error)) from None
    except AmbiguousRolloutError as error:
        raise UsageProblem(str(error)) from None
    if found is None:
        raise ApiProblem(f"no rollout of {ref.describe()}")
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        _stdout_renderer().rollout_detail(found)


_ACTION_HELP = """

    ID: a rollout id, <login server>/<repository>@sha256:<hex>, or
    <login server>/<repository>:<tag> (the newest rollout that tag names). Asks the API once
    and prints "{action} accepted for <id>" and the rollout region by region, as status ID
    does. The API decides whether the action fits the rollout's state: when it does not,
    prints "refused: <why>" to stderr and exits 1.
"""


def default_actor(environ: Mapping[str, str] | None = None) -> str | None:
    """GEOROLLOUT_ACTOR, else the login name (None when the system cannot tell it)."""
    env = os.environ if environ is None else environ
    named = env.get(ACTOR_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser() or None
    except (OSError, KeyError, ImportError):  # no login name in the environment or passwd
        return None


def _not_blank(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for each in value if isinstance(value, tuple) else (value,):
        if each is not None and not each.strip():
            raise click.BadParameter("must not be blank")
    return value


def _act(
    action: str,
    image_or_id: str,
    regions: Sequence[str],
    reason: str | None,
    actor: str | None,
) -> None:
    ref = _ref(image_or_id)
    client = _client()
    try:
        rollout_id = find_rollout_id(client, ref)
    except (ApiError, ApiUnreachable) as error:
        raise ApiProblem(str(error)) from None
    except AmbiguousRolloutError as error:
        raise UsageProblem(str(error)) from None
    if rollout_id is None:
        raise ApiProblem(f"no rollout of {ref.describe()}")
    try:
        document = client.act_on_rollout(
            rollout_id,
            action,
            reason=reason,
            regions=regions,
            actor=actor if actor is not None else default_actor(),
        )
    except ApiError as error:
        if error.status == 409:
            click.echo(f"refused: {error.message}", err=True)
            raise click.exceptions.Exit(EXIT_REFUSED) from None
        raise ApiProblem(str(error)) from None
    except ApiUnreachable as error:
        raise ApiProblem(str(error)) from None
    answered = document.get("id")
    click.echo(f"{action} accepted for {answered if isinstance(answered, str) else rollout_id}")
    _stdout_renderer().rollout_detail(document)


def _action_command(action: str) -> click.Command:
    @click.argument("image_or_id", metavar="ID")
    @click.option(
        "--region",
        "regions",
        multiple=True,
        metavar="R",
        callback=_not_blank,
        help="Only region R (repeatable); without it, the whole rollout.",
    )
    @click.option(
        "--reason",
        metavar="TEXT",
        callback=_not_blank,
        help="Why, recorded in the rollout's history.",
    )
    @click.option(
        "--actor",
        metavar="NAME",
        callback=_not_blank,
        help=f"Who acts, recorded in the history (default: {ACTOR_ENV}, else your login "
        "name). Unverified unless App Service authentication signs you in.",
    )
    def command(
        image_or_id: str, regions: tuple[str, ...], reason: str | None, actor: str | None
    ) -> None:
        _act(action, image_or_id, regions, reason, actor)

    help_text = ACTION_SUMMARIES[action] + _ACTION_HELP.format(action=action)
    return cli.command(name=action, help=help_text)(command)


for _action in ROLLOUT_ACTIONS:
    _action_command(_action)


def main() -> None:
    """The console script `georollout`."""
    cli(prog_name="georollout")
