"""How the watch's checks make one verdict (the checks themselves run against the ARM
emulator in tests/integration/service/test_progressive_service.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from shared.domain.model import DeploymentRef
from shared.domain.rollout import VerifyDeployment
from shared.errors import TransientError
from shared.service.verification import CheckResult, DeploymentCheck, verify

ACTION = VerifyDeployment("westus", DeploymentRef("/ws", "ep", "d1"), '{"input": 1}')


@dataclass
class Scripted:
    """A check answering what the test says, and counting its calls."""

    name: str
    answer: CheckResult | Exception | None
    calls: list[VerifyDeployment] = field(default_factory=list)

    async def check(self, action: VerifyDeployment) -> CheckResult | None:
        self.calls.append(action)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def run(*checks: DeploymentCheck) -> CheckResult:
    return asyncio.run(verify(tuple(checks), ACTION))


def test_every_check_passing_passes_and_names_what_it_saw() -> None:
    verdict = run(Scripted("a", CheckResult(True, "fine")), Scripted("b", CheckResult(True, "ok")))
    assert verdict == CheckResult(True, "a: fine; b: ok")


def test_the_first_failing_check_decides_and_the_rest_do_not_run() -> None:
    later = Scripted("later", CheckResult(True, "fine"))
    verdict = run(Scripted("arm", CheckResult(False, "Failed in ARM")), later)
    assert verdict == CheckResult(False, "arm: Failed in ARM")
    assert later.calls == []


def test_a_check_that_cannot_tell_is_skipped() -> None:
    verdict = run(Scripted("smoke", None), Scripted("arm", CheckResult(True, "Succeeded")))
    assert verdict == CheckResult(True, "arm: Succeeded")
    assert run(Scripted("smoke", None)) == CheckResult(True, "no check applies")


def test_a_fault_on_our_side_is_no_verdict() -> None:
    with pytest.raises(TransientError):
        run(Scripted("arm", TransientError("429 from ARM")), Scripted("b", CheckResult(True, "")))
