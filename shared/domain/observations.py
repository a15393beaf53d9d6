"""What a saved step tells the metrics (pure): arrivals, detection, deployments, outcomes.

`observe(before, after)` compares a rollout before and after one reconcile pass and names
what happened in between, once: a replay of the same pass observes nothing new, because
`before` then already holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.domain.events import EventType
from shared.domain.model import Rollout
from shared.domain.replication import ReplicationSample, new_samples

RegionSeconds = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Observations:
    """Seconds per region, and the rollout's state if this step ended it."""

    # Images that arrived in secondary regions (what the replication statistics keep).
    arrivals: list[tuple[str, ReplicationSample]] = field(default_factory=list)
    # The longest an image can have been in a replica before georollout saw it: from the
    # last probe that found it missing (404) to the one that found it.
    detection_lag_s: RegionSeconds = field(default_factory=list)
    # From the deployment's start to the region serving it (all traffic moved).
    deployment_duration_s: RegionSeconds = field(default_factory=list)
    finished_as: str | None = None

    @property
    def replication_latency_s(self) -> RegionSeconds:
        """Each arrival's latency after the primary had the image."""
        return [(region, sample.latency_s) for region, sample in self.arrivals]

    def __bool__(self) -> bool:
        return bool(
            self.arrivals or self.detection_lag_s or self.deployment_duration_s or self.finished_as
        )


def observe(before: Rollout, after: Rollout) -> Observations:
    """What changed from `before` to `after` (one generation; a new one observes nothing)."""
    if before.generation != after.generation:
        return Observations()
    earlier = {r.region: r for r in before.regions}
    lags: RegionSeconds = []
    durations: RegionSeconds = []
    for region in after.regions:
        prior = earlier.get(region.region)
        if prior is None:
            continue
        arrived = region.replicated_at
        if prior.replicated_at is None and arrived is not None and prior.absent_at is not None:
            lags.append((region.region, (arrived - prior.absent_at).total_seconds()))
        started, live = region.deploy_started_at, region.live_at
        if prior.live_at is None and live is not None and started is not None:
            durations.append((region.region, (live - started).total_seconds()))
    sent_before = {e.id for e in before.outbox}
    finished = any(
        e.type is EventType.ROLLOUT_FINISHED and e.id not in sent_before for e in after.outbox
    )
    return Observations(
        arrivals=new_samples(before, after),
        detection_lag_s=lags,
        deployment_duration_s=durations,
        finished_as=after.state.value if finished else None,
    )
