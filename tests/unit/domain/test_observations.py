"""What one saved step tells the metrics: each thing once, and nothing across generations."""

from __future__ import annotations

from shared.domain.observations import Observations, observe
from shared.domain.rollout import record_probe
from tests.unit.domain.builders import ABSENT, POLICY, at, fresh, live, published, replicated


def test_an_arrival_after_a_missing_probe_gives_its_latency_and_detection_lag() -> None:
    rollout = replicated(fresh(), "eastus", at(10))
    rollout = record_probe(rollout, "westus", ABSENT, at(12), POLICY, jitter=0.5)
    arrived = replicated(rollout, "westus", at(19))
    seen = observe(rollout, arrived)
    assert seen.replication_latency_s == [("westus", 5.5)]  # missing at 12, there at 19
    assert seen.detection_lag_s == [("westus", 7.0)]  # since the probe that found it missing
    assert not observe(arrived, arrived)


def test_an_image_there_at_the_first_look_gives_no_lag_and_no_latency() -> None:
    rollout = replicated(fresh(), "eastus", at(10))
    assert observe(rollout, replicated(rollout, "westus", at(10))) == Observations()


def test_a_region_going_live_gives_its_deployment_duration_and_the_last_one_the_outcome() -> None:
    rollout = fresh()
    for region in ("eastus", "westus", "northeurope"):
        rollout = replicated(rollout, region, at(1))
    rollout = published(rollout)
    primary_live = live(rollout, "eastus", at(30))
    assert observe(rollout, primary_live).deployment_duration_s == [("eastus", 0.0)]
    assert observe(rollout, primary_live).finished_as is None
    everywhere = live(live(published(primary_live), "westus", at(40)), "northeurope", at(41))
    seen = observe(published(primary_live), everywhere)
    assert [region for region, _ in seen.deployment_duration_s] == ["westus", "northeurope"]
    assert seen.finished_as == "live"
    # Sent and saved: a later step does not count the same end again.
    assert observe(published(everywhere), published(everywhere)).finished_as is None
