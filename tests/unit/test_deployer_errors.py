"""The one place that classifies what ARM answered: refused for good, or not now."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from shared.adapters.foundry_deployer import (
    DeployerUnavailableError,
    DeploymentRefusedError,
    _failure,
)
from shared.errors import RefusedError, TransientError


def _answered(status: int, message: str = "ARM said no") -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    return error


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_a_request_arm_refuses_fails_the_step(status: int) -> None:
    failure = _failure(_answered(status))
    assert isinstance(failure, DeploymentRefusedError) and isinstance(failure, RefusedError)
    assert failure.status == status


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 503])
def test_busy_throttled_or_down_is_tried_again(status: int) -> None:
    # 409 is what the ARM emulator (and, per Azure/azure-sdk-for-net#36961, Azure) answers a
    # deployment PUT while its endpoint is still Updating: the region waits, it never fails.
    failure = _failure(_answered(status))
    assert isinstance(failure, DeployerUnavailableError) and isinstance(failure, TransientError)


def test_no_answer_at_all_is_tried_again() -> None:
    failure = _failure(ServiceRequestError("connection refused"))
    assert isinstance(failure, DeployerUnavailableError) and failure.status is None
