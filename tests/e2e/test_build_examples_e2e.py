"""docs/build-systems.md's examples: the page shows the files in docs/examples/ verbatim, the
curl/openssl script and the CI definitions' georollout steps roll an image out on the local
environment, and every shell snippet passes shellcheck and calls georollout only with options
the command takes."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.build_secret import build_webhook_secret
from devenv.images import build_helm_chart, push_image
from devenv.paths import REPO_ROOT
from devenv.stack import Stack
from shared.domain.model import rollout_id
from tests.e2e.conftest import Pushed
from tests.e2e.local_api import FunctionApp

pytestmark = pytest.mark.e2e

DOC = REPO_ROOT / "docs" / "build-systems.md"
EXAMPLES = REPO_ROOT / "docs" / "examples"
SCRIPT = EXAMPLES / "notify-and-wait.sh"
SHELL_SCRIPTS = (SCRIPT, EXAMPLES / "push-notify-wait.sh")
GITHUB_ACTIONS = EXAMPLES / "github-actions.yml"
AZURE_PIPELINES = EXAMPLES / "azure-pipelines.yml"
JENKINSFILE = EXAMPLES / "Jenkinsfile"
GEOROLLOUT = REPO_ROOT / ".venv" / "bin" / "georollout"
SHELLCHECK = shutil.which("shellcheck")

# A fenced block right after `<!-- example: docs/examples/<file> -->` shows that file.
EXAMPLE_BLOCK = re.compile(
    r"^<!-- example: (?P<path>docs/examples/\S+) -->\n```[\w-]*\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)

# FROM THE CONTRACT, not from the code: the options of `georollout notify` and `georollout wait`
# as the contract's table "Command line: georollout" lists them (every one takes a value). The
# examples stick to these so they keep working whatever else the command grows;
# test_georollout_invocations_are_accepted_by_the_installed_command checks the real command.
CONTRACT_OPTIONS: dict[str, frozenset[str]] = {
    "notify": frozenset({"--tag", "--build-url", "--commit", "--system", "--id"}),
    "wait": frozenset({"--timeout"}),
}

# CI expressions that would be pasted into a script before the shell reads it.
GITHUB_EXPRESSION = re.compile(r"\$\{\{\s*(?P<name>[\w.-]+)\s*\}\}")
PIPELINE_MACRO = re.compile(r"\$\((?P<name>[A-Za-z_][\w.]*)\)")
# Variables of the examples that hold a secret or a key derived from one.
SECRET_NAMES = re.compile(r"WEBHOOK_SECRET|FUNCTION_KEY|PASSWORD|\$\{?secret\b|key_hex")


@dataclass(frozen=True)
class ShellStep:
    """One shell step of a CI definition: its script and the environment it maps."""

    name: str
    script: str
    env: dict[str, str]


def github_steps() -> list[ShellStep]:
    workflow = yaml.safe_load(GITHUB_ACTIONS.read_text())
    steps: list[ShellStep] = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                assert step.get("shell") == "bash", f"{step['name']}: say shell: bash"
                steps.append(ShellStep(step["name"], step["run"], dict(step.get("env", {}))))
    return steps


def pipeline_steps() -> list[ShellStep]:
    pipeline = yaml.safe_load(AZURE_PIPELINES.read_text())
    steps: list[ShellStep] = []
    for step in pipeline["steps"]:
        assert "script" not in step, "use bash: (script: runs sh on Linux agents)"
        if "bash" in step:
            steps.append(ShellStep(step["displayName"], step["bash"], dict(step.get("env", {}))))
    return steps


def jenkins_steps() -> list[str]:
    """The Jenkinsfile's `sh '...'` scripts (single-quoted, so Groovy interpolates nothing)."""
    text = JENKINSFILE.read_text()
    assert 'sh "' not in text, "a double-quoted sh step lets Groovy interpolate secrets"
    return re.findall(r"\bsh '([^']*)'", text)


def ci_steps() -> list[ShellStep]:
    return github_steps() + pipeline_steps()


def shellcheck(script: str, tmp_path: Path, *, shell: str = "bash") -> str:
    """shellcheck's findings on `script` ('' when clean)."""
    assert SHELLCHECK, "shellcheck is not installed: run `make setup`"
    path = tmp_path / f"snippet-{uuid.uuid4().hex}.sh"
    path.write_text(script)
    completed = subprocess.run(
        [SHELLCHECK, f"--shell={shell}", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "" if completed.returncode == 0 else completed.stdout + completed.stderr


@dataclass(frozen=True)
class Invocation:
    subcommand: str
    options: list[str]
    positionals: list[str]


def georollout_invocations(script: str) -> list[Invocation]:
    """Every `georollout <subcommand> ...` in a shell script (continuation lines joined)."""
    found: list[Invocation] = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "georollout":
            continue
        options: list[str] = []
        positionals: list[str] = []
        rest = iter(words[2:])
        for word in rest:
            if word.startswith("-"):
                options.append(word)
                next(rest)  # every option the examples may use takes a value
            else:
                positionals.append(word)
        found.append(Invocation(words[1], options, positionals))
    return found


# --- the page and the files -----------------------------------------------------------------


def test_the_page_shows_every_example_file_byte_for_byte() -> None:
    shown = {match["path"]: match["body"] for match in EXAMPLE_BLOCK.finditer(DOC.read_text())}
    files = {
        str(path.relative_to(REPO_ROOT)): path.read_text()
        for path in sorted(EXAMPLES.iterdir())
        if path.is_file()
    }
    assert sorted(shown) == sorted(files), "each example file appears once under its marker"
    for path, text in files.items():
        assert shown[path] == text, f"{path} and its copy in {DOC.name} differ"


def test_the_scripts_are_executable_and_never_trace_or_print_the_secret() -> None:
    for path in SHELL_SCRIPTS:
        assert os.access(path, os.X_OK), f"{path.name} is not executable"
    for path in EXAMPLES.iterdir():
        text = path.read_text()
        assert not re.search(r"set -\w*x|set -o xtrace|bash -\w*x", text), path.name
        # printf feeds secrets into pipes; echo only ever talks to the log. (The end-to-end tests
        # below check the script's actual output.)
        for line in text.splitlines():
            if re.search(r"\becho\b", line):
                assert not SECRET_NAMES.search(line), (path.name, line)


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_the_scripts_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    assert shellcheck(path.read_text(), tmp_path) == ""


@pytest.mark.parametrize(
    "step", ci_steps(), ids=lambda step: re.sub(r"\W+", "-", step.name.lower())
)
def test_every_ci_shell_step_passes_shellcheck_and_takes_values_from_env(
    step: ShellStep, tmp_path: Path
) -> None:
    assert not GITHUB_EXPRESSION.search(step.script), "values must come through env:"
    assert not PIPELINE_MACRO.search(step.script), "values must come through env:"
    assert shellcheck("#!/usr/bin/env bash\n" + step.script, tmp_path) == ""


def test_every_jenkins_sh_step_passes_shellcheck(tmp_path: Path) -> None:
    scripts = jenkins_steps()
    assert any("push-notify-wait.sh" in script for script in scripts)
    for script in scripts:
        # Jenkins runs sh steps with /bin/sh.
        assert shellcheck("#!/bin/sh\n" + script + "\n", tmp_path, shell="sh") == "", script


@pytest.mark.parametrize(
    ("steps", "secret", "function_key", "digest"),
    [
        (
            github_steps,
            "${{ secrets.GEOROLLOUT_BUILD_WEBHOOK_SECRET }}",
            "${{ secrets.GEOROLLOUT_FUNCTION_KEY }}",
            "${{ steps.build.outputs.digest }}",
        ),
        (
            pipeline_steps,
            "$(GEOROLLOUT_BUILD_WEBHOOK_SECRET)",
            "$(GEOROLLOUT_FUNCTION_KEY)",
            "$(imageDigest)",
        ),
    ],
    ids=["github-actions", "azure-pipelines"],
)
def test_the_ci_definitions_notify_and_wait_with_the_digest_and_stored_secrets(
    steps: Callable[[], list[ShellStep]], secret: str, function_key: str, digest: str
) -> None:
    calls = {
        invocation.subcommand: step
        for step in steps()
        for invocation in georollout_invocations(step.script)
    }
    assert set(calls) == {"notify", "wait"}
    for subcommand, step in calls.items():
        assert step.env["IMAGE"].endswith("@" + digest), (subcommand, step.env)
        assert step.env["GEOROLLOUT_FUNCTION_KEY"] == function_key
        assert step.env["GEOROLLOUT_URL"]
    assert calls["notify"].env["GEOROLLOUT_BUILD_WEBHOOK_SECRET"] == secret


@pytest.mark.parametrize("subcommand", sorted(CONTRACT_OPTIONS))
def test_georollout_invocations_use_only_the_contracts_options(subcommand: str) -> None:
    invocations = [
        invocation
        for step in ci_steps()
        for invocation in georollout_invocations(step.script)
        if invocation.subcommand == subcommand
    ]
    assert len(invocations) == 2, "one in each CI definition"
    for invocation in invocations:
        assert set(invocation.options) <= CONTRACT_OPTIONS[subcommand], invocation
        assert len(invocation.positionals) == 1, invocation


def installed_options(subcommand: str) -> set[str]:
    """The long options `georollout <subcommand> --help` lists."""
    completed = subprocess.run(
        [str(GEOROLLOUT), subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", completed.stdout, re.MULTILINE))


@pytest.mark.skipif(not GEOROLLOUT.exists(), reason="the georollout command is not installed")
def test_georollout_invocations_are_accepted_by_the_installed_command() -> None:
    invocations = [
        invocation for step in ci_steps() for invocation in georollout_invocations(step.script)
    ]
    assert {invocation.subcommand for invocation in invocations} == {"notify", "wait"}
    for invocation in invocations:
        accepted = installed_options(invocation.subcommand)
        assert "--help" in accepted, "could not read the options from --help"
        assert set(invocation.options) <= accepted, (invocation, accepted)


# --- end to end on the local environment ----------------------------------------------------


@pytest.fixture(scope="module")
def secret(stack: Stack) -> str:
    return build_webhook_secret(stack.env.state_dir)


def secret_forms(secret: str) -> list[str]:
    """The secret as text, its base64 part and its key in hex: none may appear in any output."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return [secret, secret.removeprefix("whsec_"), key.hex()]


def run_script(
    stack: Stack, secret: str, image: str, *, timeout_seconds: int, **extra: str
) -> subprocess.CompletedProcess[str]:
    # Only what the script documents, plus PATH: nothing from the test's own environment.
    env = {
        "PATH": os.environ["PATH"],
        "GEOROLLOUT_URL": stack.env.host_url,
        "GEOROLLOUT_BUILD_WEBHOOK_SECRET": secret,
        "IMAGE": image,
        "TIMEOUT_SECONDS": str(timeout_seconds),
        "POLL_SECONDS": "1",
        **extra,
    }
    completed = subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_seconds + 60,
        check=False,
    )
    for form in secret_forms(secret):
        assert form not in completed.stdout + completed.stderr, "the script printed the secret"
    return completed


def output_of(completed: subprocess.CompletedProcess[str]) -> str:
    return f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"


def test_the_script_notifies_and_exits_0_once_the_image_is_live(
    app: FunctionApp, stack: Stack, push: Callable[[str, str], Pushed], secret: str
) -> None:
    pushed = push("examples/curl", "v1")
    registry = stack.env.primary.registry_host
    build_id = uuid.uuid4().hex[:12]
    completed = run_script(
        stack,
        secret,
        f"{registry}/{pushed.repository}@{pushed.digest}",
        timeout_seconds=180,
        TAG="v1",
        BUILD_SYSTEM="jenkins",
        BUILD_ID=build_id,
        BUILD_URL=f"https://jenkins.example/job/models/{build_id}/",
        BUILD_COMMIT="9fceb02d0ae598e95dc970b74767f19372d61af8",
    )
    assert completed.returncode == 0, output_of(completed)
    expected = rollout_id(registry, pushed.repository, pushed.digest)
    assert f"as rollout {expected}" in completed.stdout
    doc = app.rollout(expected)
    assert doc["state"] == "live", doc
    assert (
        completed.stdout.rstrip().splitlines()[-1].startswith(f"notify-and-wait: {expected}: live")
    )
    builds = [b for b in doc["builds"] if b["id"] == build_id]
    assert len(builds) == 1, doc["builds"]
    assert builds[0]["system"] == "jenkins"
    assert builds[0]["url"] == f"https://jenkins.example/job/models/{build_id}/"
    assert builds[0]["commit"] == "9fceb02d0ae598e95dc970b74767f19372d61af8"


def test_the_script_exits_124_when_the_registry_lacks_the_digest(
    app: FunctionApp, stack: Stack, secret: str
) -> None:
    registry = stack.env.primary.registry_host
    repository, digest = "examples/absent", "sha256:" + uuid.uuid4().hex * 2
    # No timing assertion: bash's SECONDS counts whole seconds, so the script's own 4 s can
    # end after 3.x s of wall time; the exit code and the message are what the job sees.
    completed = run_script(stack, secret, f"{registry}/{repository}@{digest}", timeout_seconds=4)
    assert completed.returncode == 124, output_of(completed)
    assert "not live after 4s" in completed.stderr
    doc = app.rollout(rollout_id(registry, repository, digest))
    assert doc["state"] == "replicating", doc
    assert all(region["deployment"] is None for region in doc["regions"])


def test_the_script_exits_1_when_the_rollout_ends_without_going_live(
    app: FunctionApp, stack: Stack, secret: str
) -> None:
    # A Helm chart is an OCI artifact georollout records as ignored and never deploys.
    chart = build_helm_chart(name="example-chart", version="1.0.0", seed=str(uuid.uuid4()))
    digest = push_image(
        stack.env.primary.registry_url, "examples/chart", "1.0.0", chart, ca_path=stack.tls.ca_pem
    )
    registry = stack.env.primary.registry_host
    completed = run_script(
        stack, secret, f"{registry}/examples/chart@{digest}", timeout_seconds=120
    )
    assert completed.returncode == 1, output_of(completed)
    assert "the rollout ended ignored" in completed.stderr
    assert app.rollout(rollout_id(registry, "examples/chart", digest))["state"] == "ignored"


def test_the_script_exits_3_for_a_wrong_secret_and_records_nothing(
    app: FunctionApp, stack: Stack, secret: str
) -> None:
    registry = stack.env.primary.registry_host
    repository, digest = "examples/wrong-secret", "sha256:" + uuid.uuid4().hex * 2
    wrong = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    completed = run_script(stack, wrong, f"{registry}/{repository}@{digest}", timeout_seconds=30)
    assert completed.returncode == 3, output_of(completed)
    assert "refused (401)" in completed.stderr and "unauthorized" in completed.stderr
    assert app.rollouts(repository=repository) == []
    # The right secret never reaches a process it was not given to.
    assert secret not in completed.stdout + completed.stderr


def test_the_script_refuses_an_image_without_a_digest_before_sending(
    app: FunctionApp, stack: Stack, secret: str
) -> None:
    registry = stack.env.primary.registry_host
    completed = run_script(stack, secret, f"{registry}/examples/tagged:v1", timeout_seconds=30)
    assert completed.returncode == 2, output_of(completed)
    assert "IMAGE must be" in completed.stderr
    assert app.rollouts(repository="examples/tagged") == []


# The CI definitions' own georollout steps, run as their CI would run them (values substituted
# into env:, scripts untouched) with the installed command against the local environment.


def substitute(value: str, pattern: re.Pattern[str], values: Mapping[str, str]) -> str:
    """A CI env value with its expressions replaced; an unknown expression fails the test."""
    return pattern.sub(lambda match: values[match["name"]], value)


def run_ci_steps(
    steps: list[ShellStep],
    pattern: re.Pattern[str],
    values: Mapping[str, str],
    ci_env: Mapping[str, str],
) -> Iterator[subprocess.CompletedProcess[str]]:
    for step in steps:
        if not georollout_invocations(step.script):
            continue  # building, pushing and installing belong to the CI machine
        env = {
            "PATH": f"{GEOROLLOUT.parent}{os.pathsep}{os.environ['PATH']}",
            **ci_env,
            **{name: substitute(str(value), pattern, values) for name, value in step.env.items()},
        }
        # As both CIs run bash steps: errexit and pipefail, no profile.
        yield subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step.script],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.mark.skipif(not GEOROLLOUT.exists(), reason="the georollout command is not installed")
@pytest.mark.parametrize("ci", ["github-actions", "azure-pipelines"])
def test_the_ci_definitions_georollout_steps_roll_an_image_out(
    app: FunctionApp,
    stack: Stack,
    push: Callable[[str, str], Pushed],
    secret: str,
    ci: str,
) -> None:
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # a 40-hex commit, also the pushed tag
    repository = f"examples/{ci}"
    pushed = push(repository, commit)
    registry = stack.env.primary.registry_host
    run_id = str(int(time.time()))
    common = {
        "GEOROLLOUT_URL": stack.env.host_url,
        "GEOROLLOUT_FUNCTION_KEY": "",  # the local host checks no keys
        "GEOROLLOUT_BUILD_WEBHOOK_SECRET": secret,
    }
    steps: list[ShellStep]
    values: dict[str, str]
    if ci == "github-actions":
        steps, pattern = github_steps(), GITHUB_EXPRESSION
        values = {
            "vars.REGISTRY": registry,
            "env.REPOSITORY": repository,
            "steps.build.outputs.digest": pushed.digest,
            "vars.GEOROLLOUT_URL": common["GEOROLLOUT_URL"],
            "secrets.GEOROLLOUT_FUNCTION_KEY": common["GEOROLLOUT_FUNCTION_KEY"],
            "secrets.GEOROLLOUT_BUILD_WEBHOOK_SECRET": secret,
        }
        ci_env = {
            "GITHUB_SHA": commit,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_REPOSITORY": "org/models",
        }
        build_url = f"https://github.example/org/models/actions/runs/{run_id}"
    else:
        steps, pattern = pipeline_steps(), PIPELINE_MACRO
        values = {
            "registry": registry,
            "repository": repository,
            "imageDigest": pushed.digest,
            **common,
        }
        ci_env = {
            "BUILD_SOURCEVERSION": commit,
            "BUILD_BUILDID": run_id,
            "SYSTEM_COLLECTIONURI": "https://dev.azure.example/org/",
            "SYSTEM_TEAMPROJECTID": "6c1bbd3c-6ec8-4b31-a59c-9ab9b5c4f2a1",
        }
        build_url = (
            "https://dev.azure.example/org/6c1bbd3c-6ec8-4b31-a59c-9ab9b5c4f2a1"
            f"/_build/results?buildId={run_id}"
        )
    for completed in run_ci_steps(steps, pattern, values, ci_env):
        assert completed.returncode == 0, output_of(completed)
        assert secret not in completed.stdout + completed.stderr
    doc = app.rollout(rollout_id(registry, repository, pushed.digest))
    assert doc["state"] == "live", doc
    builds: list[dict[str, Any]] = [b for b in doc["builds"] if b["id"] == run_id]
    assert len(builds) == 1, doc["builds"]
    assert builds[0]["system"] == ci
    assert builds[0]["url"] == build_url
    assert builds[0]["commit"] == commit
    assert commit in doc["tags"] + doc.get("pending_tags", [])
