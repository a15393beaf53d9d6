"""Builders for domain tests: notices, times and a rollout walked to a given point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.model import DeploymentRef, ProbeEvidence, Rollout
from shared.domain.push import NoticeSource, PushNotice
from shared.domain.rollout import (
    RolloutPolicy,
    new_rollout,
    record_deployable,
    record_deployment_started,
    record_probe,
    record_provisioning_succeeded,
    record_smoke_passed,
    record_traffic_shifted,
)
from shared.domain.targets import DeploymentSettings, Target
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
REGIONS = ("eastus", "westus", "northeurope")
TARGET = Target(endpoint="models-llm", settings=DeploymentSettings())
POLICY = RolloutPolicy()
PRESENT = ProbeOutcome(
    ProbeVerdict.PRESENT, ProbeEvidence(200, (("docker-content-digest", DIGEST_A),))
)
ABSENT = ProbeOutcome(ProbeVerdict.ABSENT, ProbeEvidence(404))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def notice(
    digest: str = DIGEST_A, tag: str | None = "v1", pushed_at: datetime | None = T0
) -> PushNotice:
    return PushNotice(
        registry="contoso.azurecr.io",
        repository="models/llm",
        digest=digest,
        source=NoticeSource.EVENTGRID,
        tag=tag,
        pushed_at=pushed_at,
    )


def ref(region: str, name: str = "sha256-aaaaaaaaaaaa") -> DeploymentRef:
    return DeploymentRef(
        workspace=f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-{region}",
        endpoint="models-llm",
        name=name,
    )


def replicated(rollout: Rollout, region: str, now: datetime) -> Rollout:
    return record_probe(rollout, region, PRESENT, now, POLICY, jitter=0.5)


def live(rollout: Rollout, region: str, now: datetime, previous: str | None = None) -> Rollout:
    rollout = record_deployment_started(rollout, region, ref(region), now)
    rollout = record_provisioning_succeeded(rollout, region, now)
    rollout = record_smoke_passed(rollout, region, now)
    return record_traffic_shifted(rollout, region, previous, now)


def fresh() -> Rollout:
    """A deployable rollout just sighted, nothing probed yet."""
    return record_deployable(new_rollout(notice(), REGIONS, TARGET, T0), 2_000_000_000, T0)
