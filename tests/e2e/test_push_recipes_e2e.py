"""The README's push recipes (skopeo, oras-py), run as written against the local environment.

Each recipe is read from the README (the fenced block after its `<!-- recipe: NAME -->`
marker) and run by bash in a directory laid out like the repository's root: `.georollout`
is this environment's state directory (its CA among it) and `.venv` the project's. The
only change is the registry's address: this environment listens on free ports.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from devenv.__main__ import push_sample_image
from devenv.stack import Stack
from tests.e2e.conftest import Pushed
from tests.e2e.local_api import FunctionApp, poll

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTED_REGISTRY = "127.0.0.1:5001"
DOCUMENTED_APP = "http://127.0.0.1:7071"


def recipe(name: str) -> str:
    """The shell block of the README that follows `<!-- recipe: name -->`."""
    text = README.read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- recipe: {re.escape(name)} -->\s*```sh\n(.*?)\n```", text, flags=re.DOTALL
    )
    assert found, f"README.md has no recipe {name!r}"
    return found.group(1)


def run_recipe(name: str, stack: Stack, workdir: Path) -> subprocess.CompletedProcess[str]:
    (workdir / ".georollout").symlink_to(stack.env.state_dir)
    (workdir / ".venv").symlink_to(Path(sys.executable).parents[1])
    script = (
        recipe(name)
        .replace(DOCUMENTED_REGISTRY, stack.env.primary.registry_host)
        .replace(DOCUMENTED_APP, stack.env.host_url)
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_skopeo_recipe_copies_an_image_that_georollout_then_rolls_out(
    app: FunctionApp, stack: Stack, push: Callable[[str, str], Pushed], tmp_path: Path
) -> None:
    source = push("models/llm", "v1")  # what the recipe copies from
    done = run_recipe("skopeo", stack, tmp_path)
    assert done.returncode == 0, done.stderr
    copied = poll(
        lambda: app.rollout_of("models/llm-copy", source.digest),
        lambda doc: doc is not None,
        timeout=30,
        what="the copy recorded",
    )
    assert copied is not None and copied["tags"] in ([], ["v1"]), copied


def test_the_oras_recipe_pushes_an_artifact_georollout_records_and_ignores(
    app: FunctionApp, stack: Stack, tmp_path: Path
) -> None:
    done = run_recipe("oras", stack, tmp_path)
    assert done.returncode == 0, done.stderr

    def artifact() -> dict[str, object] | None:
        found = app.rollouts(repository="models/weights")
        return found[0] if found else None

    doc = poll(
        artifact,
        lambda d: d is not None and d["state"] == "ignored",
        timeout=30,
        what="the artifact recorded and ignored",
    )
    assert doc is not None and doc["ignored_reason"], doc


def test_the_cloudevents_recipe_is_accepted_and_records_the_push(
    app: FunctionApp, stack: Stack, push: Callable[[str, str], Pushed], tmp_path: Path
) -> None:
    pushed = push("models/llm", "v1")  # the recipe announces models/llm:v1
    # The registry's own notification is recorded first; the recipe's event comes on top.
    poll(
        lambda: app.rollout_of("models/llm", pushed.digest),
        lambda doc: doc is not None,
        timeout=30,
        what="the push recorded",
    )
    host_log = stack.env.state_dir / "logs" / "functions-host.log"
    accepted = f"accepted push models/llm@{pushed.digest} tag=v1"

    def acceptances() -> int:
        return host_log.read_text(errors="replace").count(accepted)

    before = acceptances()
    done = run_recipe("cloudevents", stack, tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "202"), done
    # Accepted as a push of that digest (an invalid event would be acknowledged too, 202,
    # and logged as refused: the log says which).
    poll(acceptances, lambda count: count > before, timeout=15, what="the CloudEvent accepted")


def test_devenv_push_says_two_lines_and_leaves_the_sdk_request_log_out(
    app: FunctionApp, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # `python -m devenv` logs at INFO
    logging.getLogger("azure").setLevel(logging.INFO)  # where the SDK logs each request
    lines = push_sample_image(
        stack.env, "models/devenv-push", "v1", size_bytes=3_000_000, seed=uuid.uuid4().hex
    )
    registry = stack.env.primary.registry_host
    assert len(lines) == 2 and lines[0].startswith(f"pushed {registry}/models/devenv-push:v1 = ")
    assert [r.getMessage()[:80] for r in caplog.records if r.name.startswith("azure")] == []
    digest = lines[0].rsplit(" = ", 1)[1]
    poll(
        lambda: app.rollout_of("models/devenv-push", digest),
        lambda doc: doc is not None,
        timeout=30,
        what="the pushed image recorded",
    )
