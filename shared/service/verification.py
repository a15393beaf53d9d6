"""The checks a watched deployment goes through (a traffic step, a wave's soak).

The state machine asks for `VerifyDeployment` and records one verdict, pass or fail with a
reason; which checks make that verdict is decided here. Each check is a small object with
one `check` coroutine, so a metric-based one (an Azure Monitor query, an HTTP endpoint that
answers pass or fail) is one more class in `checks_for`, and the state machine never
changes. A check that cannot tell (the deployment has no smoke request) answers None; a
fault on georollout's side (ARM throttling, no answer) raises `TransientError`, which is
not a verdict: the check runs again on the next step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from shared.adapters.foundry_deployer import FoundryDeployer, ProvisioningState
from shared.domain.rollout import VerifyDeployment
from shared.errors import RefusedError, TransientError


@dataclass(frozen=True, slots=True)
class CheckResult:
    passed: bool
    detail: str


class DeploymentCheck(Protocol):
    """One way of telling whether a deployment taking traffic is healthy."""

    @property
    def name(self) -> str: ...

    async def check(self, action: VerifyDeployment) -> CheckResult | None: ...


@dataclass(frozen=True, slots=True)
class ArmStateCheck:
    """The deployment as ARM reports it: one that is gone or turned `Failed` (an update or a
    scale-out that failed) fails the check."""

    deployer: FoundryDeployer
    name: str = "arm_state"

    async def check(self, action: VerifyDeployment) -> CheckResult | None:
        ref = action.deployment
        try:
            status = await self.deployer.deployment_status(
                action.region, ref.endpoint, ref.name, operation_url=None
            )
        except RefusedError as error:
            return CheckResult(False, f"ARM refused reading deployment {ref.name}: {error}")
        if status.state is ProvisioningState.MISSING:
            return CheckResult(False, f"deployment {ref.name} no longer exists")
        if status.state is ProvisioningState.FAILED:
            return CheckResult(False, f"deployment {ref.name} is in the Failed state in ARM")
        return CheckResult(True, f"deployment {ref.name} is {status.state.value}")


@dataclass(frozen=True, slots=True)
class SmokeCheck:
    """The smoke request, pinned to the deployment by `azureml-model-deployment`: 2xx passes."""

    deployer: FoundryDeployer
    name: str = "smoke_request"

    async def check(self, action: VerifyDeployment) -> CheckResult | None:
        if action.request_body is None:
            return None
        ref = action.deployment
        result = await self.deployer.smoke_test(
            action.region, ref.endpoint, ref.name, json.loads(action.request_body or "{}")
        )
        if not result.sent:
            raise TransientError(f"smoke request not sent: {result.body[:200]}")
        if result.ok:
            return CheckResult(True, f"smoke request answered {result.status}")
        said = "got no answer" if result.status is None else f"answered {result.status}"
        return CheckResult(False, f"smoke request {said}: {result.body[:200]}")


def checks_for(deployer: FoundryDeployer) -> tuple[DeploymentCheck, ...]:
    """The checks every watched deployment goes through, in order."""
    return (ArmStateCheck(deployer), SmokeCheck(deployer))


async def verify(checks: tuple[DeploymentCheck, ...], action: VerifyDeployment) -> CheckResult:
    """All checks, one verdict: the first check that fails gives the verdict and its reason
    (the checks after it are not run); every check passing passes."""
    passed: list[str] = []
    for check in checks:
        result = await check.check(action)
        if result is None:
            continue
        if not result.passed:
            return CheckResult(False, f"{check.name}: {result.detail}")
        passed.append(f"{check.name}: {result.detail}")
    return CheckResult(True, "; ".join(passed) or "no check applies")
