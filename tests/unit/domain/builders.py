"""Builders for domain tests: notices, times and a rollout walked to a given point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.model import DeploymentRef, ProbeEvidence, Rollout, RolloutSummary, summarize
from shared.domain.push import NoticeSource, PushNotice
from shared.domain.rollout import (
    EndpointClaim,
    RolloutPolicy,
    mark_published,
    new_rollout,
    record_deployable,
    record_deployment_created,
    record_endpoint_claim,
    record_probe,
    record_provisioning_succeeded,
    record_smoke_passed,
    record_tags_resolved,
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
WORKSPACE = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
PRESENT = ProbeOutcome(
    ProbeVerdict.PRESENT, ProbeEvidence(200, (("docker-content-digest", DIGEST_A),))
)
ABSENT = ProbeOutcome(ProbeVerdict.ABSENT, ProbeEvidence(404))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def notice(
    digest: str = DIGEST_A,
    tag: str | None = "v1",
    pushed_at: datetime | None = T0,
    repository: str = "models/llm",
) -> PushNotice:
    return PushNotice(
        registry="contoso.azurecr.io",
        repository=repository,
        digest=digest,
        source=NoticeSource.EVENTGRID,
        tag=tag,
        pushed_at=pushed_at,
    )


def ref(region: str, name: str = "sha256-aaaaaaaaaaaa") -> DeploymentRef:
    return DeploymentRef(workspace=WORKSPACE, endpoint="models-llm", name=name)


def replicated(rollout: Rollout, region: str, now: datetime) -> Rollout:
    return record_probe(rollout, region, PRESENT, now, POLICY, jitter=0.5)


def confirmed(rollout: Rollout, now: datetime, peers: tuple[RolloutSummary, ...] = ()) -> Rollout:
    """The registry confirmed every claimed tag: they point at this digest now."""
    resolved: dict[str, str | None] = {tag: rollout.digest for tag in rollout.pending_tags}
    return record_tags_resolved(rollout, resolved, peers, now)


def claimed(
    rollout: Rollout,
    region: str,
    now: datetime,
    *,
    serving: str | None = None,
    serving_rollout: str | None = None,
) -> Rollout:
    """The endpoint's lease taken in `region` (the deployment is requested, not created)."""
    claim = EndpointClaim(
        workspace=WORKSPACE,
        lease_until=now + timedelta(hours=2),
        serving_deployment=serving,
        serving_rollout=serving_rollout,
    )
    return record_endpoint_claim(rollout, region, claim, now)


def started(rollout: Rollout, region: str, now: datetime) -> Rollout:
    """Claimed and created: the deployment provisions."""
    return record_deployment_created(claimed(rollout, region, now), region, None, now)


def live(rollout: Rollout, region: str, now: datetime, previous: str | None = None) -> Rollout:
    rollout = verifying(rollout, region, now, previous)
    rollout = record_smoke_passed(rollout, region, now)
    return record_traffic_shifted(rollout, region, now)


def fresh(
    digest: str = DIGEST_A, tag: str = "v1", at_: datetime = T0, repository: str = "models/llm"
) -> Rollout:
    """A deployable rollout whose tag the registry confirmed at `at_`; nothing probed yet."""
    rollout = new_rollout(
        notice(digest=digest, tag=tag, repository=repository), REGIONS, TARGET, at_
    )
    return confirmed(record_deployable(rollout, 2_000_000_000, at_), at_)


def summary(rollout: Rollout) -> RolloutSummary:
    return summarize(rollout)


def published(rollout: Rollout) -> Rollout:
    """Every event of the outbox sent."""
    return mark_published(rollout, [e.id for e in rollout.outbox])


def verifying(rollout: Rollout, region: str, now: datetime, previous: str | None = None) -> Rollout:
    """Claimed, created and provisioned: the smoke request is next (the target has one)."""
    rollout = claimed(
        rollout, region, now, serving=previous, serving_rollout="older" if previous else None
    )
    rollout = record_deployment_created(rollout, region, None, now)
    return record_provisioning_succeeded(rollout, region, now)
