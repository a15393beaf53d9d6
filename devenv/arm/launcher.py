"""Start the ARM emulator for a LocalEnv: write its config under `<state_dir>/arm/`, run it, wait until it answers."""

from __future__ import annotations

import ssl
import sys
import urllib.request
from pathlib import Path

from devenv.arm.config import DEFAULT_ENDPOINT_SETTLE_S, ArmConfig, WorkspaceConfig
from devenv.config import LOCAL_RESOURCE_GROUP, LOCAL_SUBSCRIPTION, LocalEnv
from devenv.paths import REPO_ROOT
from devenv.process import ManagedProcess, wait_until
from devenv.tls import TlsFiles


def arm_dir(env: LocalEnv) -> Path:
    return env.state_dir / "arm"


def arm_config(env: LocalEnv, *, endpoint_settle_s: float = DEFAULT_ENDPOINT_SETTLE_S) -> ArmConfig:
    """One workspace per region (`ws-<region>`), each looking images up in its own region's registry.

    `endpoint_settle_s`: how long an endpoint still says `Updating` after its operation
    succeeded (see `DEFAULT_ENDPOINT_SETTLE_S`); 0 turns that off.
    """
    directory = arm_dir(env)
    return ArmConfig(
        base_url=env.arm_url,
        provisioning_s=env.arm_provisioning_s,
        endpoint_settle_s=endpoint_settle_s,
        state_path=directory / "state.json",
        audit_path=directory / "audit.jsonl",
        workspaces=tuple(
            WorkspaceConfig(
                name=region.workspace_name,
                region=region.name,
                registry_url=region.registry_url,
                subscription_id=LOCAL_SUBSCRIPTION,
                resource_group=LOCAL_RESOURCE_GROUP,
            )
            for region in env.regions
        ),
    )


def _answers(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_arm_emulator(
    env: LocalEnv, tls: TlsFiles, *, endpoint_settle_s: float = DEFAULT_ENDPOINT_SETTLE_S
) -> ManagedProcess:
    """Run `python -m devenv.arm` on `env.arm_port` and return once /emulator/health answers over HTTPS."""
    config_path = arm_dir(env) / "config.json"
    arm_config(env, endpoint_settle_s=endpoint_settle_s).dump(config_path)
    process = ManagedProcess(
        name="arm-emulator",
        argv=[
            sys.executable,
            "-m",
            "devenv.arm",
            "--config",
            str(config_path),
            "--port",
            str(env.arm_port),
            "--cert",
            str(tls.cert_pem),
            "--key",
            str(tls.key_pem),
            "--ca",
            str(tls.ca_pem),
        ],
        log_path=env.state_dir / "logs" / "arm.log",
        cwd=REPO_ROOT,
    ).start()
    try:
        process.wait_for_port(env.arm_port)
        context = tls.client_context()

        def healthy() -> bool:
            process.check_running()
            return _answers(f"{env.arm_url}/emulator/health", context)

        wait_until(healthy, timeout=30, what="the ARM emulator to answer /emulator/health")
    except BaseException:
        process.stop()
        raise
    return process
