"""Replication statistics and the expected arrival of an image in each region (pure).

ACR says nothing about per-image replication progress, so georollout learns each region's
pace from what it saw: for every image that turned up in a secondary region, how long
after the primary had it (`latency_s`) and how big it was. A region's model is
latency = base + size / throughput, fitted robustly (Theil-Sen: the median of pairwise
slopes, so one stalled replication does not skew it) over its most recent samples. A
waiting region's `expected_at` is the primary's `replicated_at` plus the model's latency
for the image's size; with no samples it stays None, never a guess.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import combinations

from shared.domain.model import RegionProgress, RegionState, Rollout
from shared.domain.rollout import RolloutPolicy

# Samples kept per region: enough for a steady fit, small enough for one table entity.
SAMPLE_WINDOW = 30
# Sizes closer than this (relative) say nothing about throughput: their pair is skipped.
_MIN_SIZE_SPREAD = 0.05


@dataclass(frozen=True, slots=True)
class ReplicationSample:
    """One image's arrival in one secondary region: `latency_s` after the primary had it."""

    rollout_id: str
    generation: int
    image_size_bytes: int | None
    latency_s: float
    replicated_at: datetime

    @property
    def key(self) -> tuple[str, int]:
        """One sample per rollout generation and region: a replayed step adds nothing."""
        return (self.rollout_id, self.generation)


@dataclass(frozen=True, slots=True)
class ReplicationModel:
    """A region's replication pace. `throughput_bytes_per_s` is None until samples of
    different sizes show how latency grows with size; then `base_latency_s` is the fixed
    part. `typical_latency_s` is the median latency (the prediction without a size fit)."""

    region: str
    samples: tuple[ReplicationSample, ...]
    base_latency_s: float | None
    throughput_bytes_per_s: float | None
    typical_latency_s: float | None

    @classmethod
    def empty(cls, region: str) -> ReplicationModel:
        """A region with no history."""
        return cls(region, (), None, None, None)

    def expected_latency_s(self, image_size_bytes: int | None) -> float | None:
        """How long after the primary an image of this size should arrive (None: no history)."""
        if self.typical_latency_s is None:
            return None
        if (
            self.throughput_bytes_per_s is None
            or self.base_latency_s is None
            or image_size_bytes is None
        ):
            return self.typical_latency_s
        return self.base_latency_s + image_size_bytes / self.throughput_bytes_per_s

    def latency_percentile(self, fraction: float) -> float | None:
        """The latency below which `fraction` of the samples fall (nearest rank)."""
        latencies = sorted(s.latency_s for s in self.samples)
        if not latencies:
            return None
        rank = max(0, min(len(latencies) - 1, round(fraction * len(latencies) + 0.5) - 1))
        return latencies[rank]


def fit(region: str, samples: Sequence[ReplicationSample]) -> ReplicationModel:
    """The model of `region` from its samples (any order)."""
    if not samples:
        return ReplicationModel.empty(region)
    typical = statistics.median(s.latency_s for s in samples)
    sized = [(s.image_size_bytes, s.latency_s) for s in samples if s.image_size_bytes]
    slopes = [
        (lat_b - lat_a) / (size_b - size_a)
        for (size_a, lat_a), (size_b, lat_b) in combinations(sized, 2)
        if abs(size_b - size_a) > _MIN_SIZE_SPREAD * max(size_a, size_b)
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    if slope <= 0:
        # No size effect seen (or only noise against it): the typical latency is the model.
        return ReplicationModel(region, tuple(samples), None, None, typical)
    base = max(0.0, statistics.median(lat - slope * size for size, lat in sized))
    return ReplicationModel(region, tuple(samples), base, 1.0 / slope, typical)


def add_sample(
    samples: Sequence[ReplicationSample], sample: ReplicationSample, window: int = SAMPLE_WINDOW
) -> tuple[ReplicationSample, ...]:
    """`samples` with `sample` (replacing one with the same key), the newest `window` kept."""
    kept = [s for s in samples if s.key != sample.key] + [sample]
    kept.sort(key=lambda s: s.replicated_at)
    return tuple(kept[-window:])


def new_samples(before: Rollout, after: Rollout) -> list[tuple[str, ReplicationSample]]:
    """(region, sample) for each secondary region `after` saw arrive that `before` had not.

    A region found on its very first probe is left out: the image was there before anyone
    looked, so its arrival time is unknown (counting it would teach the model zeros). The
    arrival is taken as the middle of the window the probes left (see `_arrival`)."""
    primary = after.primary
    if before.generation != after.generation or primary is None:
        return []
    anchor = primary.replicated_at
    if anchor is None:
        return []
    earlier = {r.region: r for r in before.regions}
    found: list[tuple[str, ReplicationSample]] = []
    for progress in after.regions:
        prior = earlier.get(progress.region)
        arrived = progress.replicated_at
        if (
            progress.primary
            or prior is None
            or prior.replicated_at is not None
            or arrived is None
            or progress.probe_attempts <= 1
            or arrived < anchor
        ):
            continue
        sample = ReplicationSample(
            rollout_id=after.id,
            generation=after.generation,
            image_size_bytes=after.image_size_bytes,
            latency_s=(_arrival(prior, arrived) - anchor).total_seconds(),
            replicated_at=arrived,
        )
        found.append((progress.region, sample))
    return found


def _arrival(prior: RegionProgress, seen: datetime) -> datetime:
    """When the image most likely reached the replica: the middle of the window between
    the last probe that did not find it and the one that did. Counting the whole window
    would teach the model the probes' lag as replication time and put every later ETA
    late; an early ETA costs a probe, a late one costs detection time."""
    missing = prior.absent_at
    if missing is None or missing >= seen:
        return seen
    return missing + (seen - missing) / 2


def _awaits_estimate(progress: RegionProgress) -> bool:
    return (
        not progress.primary
        and progress.state is RegionState.AWAITING_REPLICATION
        and progress.expected_at is None
    )


def needs_estimates(rollout: Rollout) -> bool:
    """Whether a region waits for its replica with no expected arrival yet, and the rollout
    knows what an estimate needs (the primary has the image; its size has been read)."""
    primary = rollout.primary
    if primary is None or primary.replicated_at is None or rollout.deployable is not True:
        return False
    return any(_awaits_estimate(r) for r in rollout.regions)


def estimate_arrivals(
    rollout: Rollout, models: Mapping[str, ReplicationModel], policy: RolloutPolicy
) -> Rollout:
    """`rollout` with `expected_at` set for each waiting region whose model has history, and
    its next probe brought forward to the window around it (`policy.arrival_window`).

    Set once per generation: an ETA that moved whenever it was read would hide how good
    the prediction was."""
    if not needs_estimates(rollout):
        return rollout
    primary = rollout.primary
    assert primary is not None and primary.replicated_at is not None
    regions: list[RegionProgress] = []
    for progress in rollout.regions:
        model = models.get(progress.region)
        latency = model.expected_latency_s(rollout.image_size_bytes) if model else None
        if _awaits_estimate(progress) and latency is not None:
            expected = primary.replicated_at + timedelta(seconds=latency)
            # The next probe goes out when the image may be due, not after a blind back-off;
            # but in the window too, at most at the initial pace: a window that opened
            # already must not send a probe right behind the one that just found nothing.
            due, opens = progress.next_probe_at, expected - policy.arrival_window
            if progress.absent_at is not None:
                paced = progress.absent_at + timedelta(seconds=policy.probe_initial_backoff_s)
                opens = max(opens, paced)
            progress = replace(
                progress,
                expected_at=expected,
                next_probe_at=min(due, opens) if due is not None else due,
            )
        regions.append(progress)
    changed = tuple(regions)
    return rollout if changed == rollout.regions else replace(rollout, regions=changed)


def models_by_region(
    samples: Mapping[str, Iterable[ReplicationSample]],
) -> dict[str, ReplicationModel]:
    """Each region's fitted model."""
    return {region: fit(region, list(found)) for region, found in samples.items()}
