"""Replication statistics and expected arrivals: the fit, the samples a step yields, the ETA."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.model import RegionState, Rollout
from shared.domain.replication import (
    ReplicationModel,
    ReplicationSample,
    add_sample,
    estimate_arrivals,
    fit,
    needs_estimates,
    new_samples,
)
from shared.domain.rollout import ARRIVAL_GRACE, record_probe
from shared.domain.serialization import (
    region_to_document,
    rollout_from_record,
    rollout_to_record,
    sample_from_record,
    sample_to_record,
)
from tests.unit.domain.builders import ABSENT, POLICY, at, fresh, replicated

MB = 1_000_000


def sample(size: int | None, latency: float, n: int = 0, generation: int = 1) -> ReplicationSample:
    return ReplicationSample(f"r{n}", generation, size, latency, at(100 + n))


def exact(base: float, throughput: float, sizes: list[int]) -> list[ReplicationSample]:
    return [sample(s, base + s / throughput, n) for n, s in enumerate(sizes)]


def test_no_history_predicts_nothing() -> None:
    model = fit("westus", [])
    assert model.expected_latency_s(10 * MB) is None
    assert model.latency_percentile(0.95) is None


def test_the_fit_recovers_base_latency_and_throughput() -> None:
    model = fit("westus", exact(4.0, 10 * MB, [1 * MB, 10 * MB, 30 * MB, 50 * MB]))
    assert model.base_latency_s == pytest.approx(4.0)
    assert model.throughput_bytes_per_s == pytest.approx(10 * MB)
    assert model.expected_latency_s(200 * MB) == pytest.approx(24.0)


def test_one_stalled_replication_does_not_skew_the_fit() -> None:
    samples = exact(2.0, 20 * MB, [1 * MB, 5 * MB, 20 * MB, 40 * MB, 60 * MB, 80 * MB])
    samples.append(sample(10 * MB, 600.0, n=99))  # the region was down for ten minutes
    model = fit("westus", samples)
    assert model.expected_latency_s(100 * MB) == pytest.approx(7.0, rel=0.1)


def test_samples_of_one_size_predict_their_typical_latency() -> None:
    model = fit("westus", [sample(5 * MB, lat, n) for n, lat in enumerate((3.0, 4.0, 8.0))])
    assert model.throughput_bytes_per_s is None
    assert model.expected_latency_s(50 * MB) == 4.0  # the median: no size effect is known


def test_latency_falling_with_size_is_noise_not_a_throughput() -> None:
    model = fit("westus", [sample(1 * MB, 9.0, 0), sample(50 * MB, 5.0, 1)])
    assert model.throughput_bytes_per_s is None
    assert model.expected_latency_s(10 * MB) == 7.0


def test_add_sample_keeps_one_per_generation_and_the_newest_window() -> None:
    first = sample(MB, 3.0, n=1)
    kept = add_sample((), first)
    assert add_sample(kept, replace(first, latency_s=4.0)) == (replace(first, latency_s=4.0),)
    many: tuple[ReplicationSample, ...] = ()
    for n in range(40):
        many = add_sample(many, sample(MB, 1.0, n), window=30)
    assert [s.rollout_id for s in many] == [f"r{n}" for n in range(10, 40)]


@given(
    st.lists(
        st.tuples(st.integers(1, 10**10), st.floats(0, 10_000, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 10**11),
)
def test_a_prediction_is_never_negative_or_missing_with_history(
    points: list[tuple[int, float]], size: int
) -> None:
    model = fit("westus", [sample(s, lat, n) for n, (s, lat) in enumerate(points)])
    predicted = model.expected_latency_s(size)
    assert predicted is not None and predicted >= 0


def _waiting() -> Rollout:
    """Primary replicated at t=10, the secondaries probed once and not there yet."""
    rollout = replicated(fresh(), "eastus", at(10))
    for region in ("westus", "northeurope"):
        rollout = record_probe(rollout, region, ABSENT, at(10), POLICY, jitter=0.5)
    return rollout


def test_a_region_seen_arriving_yields_its_latency_after_the_primary() -> None:
    before = _waiting()
    after = replicated(before, "westus", at(25))
    found = new_samples(before, after)
    # Missing at t=10, there at t=25: it arrived in between, taken as the middle (t=17.5).
    assert [(region, s.latency_s, s.image_size_bytes) for region, s in found] == [
        ("westus", 7.5, 2_000_000_000)
    ]
    assert new_samples(after, after) == []  # counted once


def test_a_region_there_at_its_first_probe_yields_no_sample() -> None:
    before = replicated(fresh(), "eastus", at(10))
    after = replicated(before, "westus", at(11))
    assert new_samples(before, after) == []


def test_waiting_regions_get_an_eta_once_from_their_model() -> None:
    rollout = _waiting()
    assert needs_estimates(rollout)
    models = {"westus": fit("westus", exact(3.0, 100 * MB, [MB, 100 * MB, 300 * MB]))}
    estimated = estimate_arrivals(rollout, models, POLICY)
    west, north = estimated.region("westus"), estimated.region("northeurope")
    assert west.expected_at == at(10 + 3.0 + 20.0)  # 2 GB at 100 MB/s after the primary
    assert north.expected_at is None  # no history there: null, never a guess
    # Set once: a model that changed later does not move the ETA.
    faster = {"westus": fit("westus", exact(1.0, 1000 * MB, [MB, 100 * MB]))}
    assert estimate_arrivals(estimated, faster, POLICY).region("westus").expected_at == at(33)


def test_the_eta_is_shown_only_while_the_region_waits() -> None:
    rollout = estimate_arrivals(
        _waiting(),
        {"westus": ReplicationModel("westus", (sample(MB, 5.0),), None, None, 5.0)},
        POLICY,
    )
    assert region_to_document(rollout.region("westus"))["eta"] == "2025-03-01T12:00:15Z"
    arrived = replicated(rollout, "westus", at(14))
    assert arrived.region("westus").state is RegionState.REPLICATED
    assert region_to_document(arrived.region("westus"))["eta"] is None
    # The prediction itself is kept with the record, to compare with the arrival.
    restored = rollout_from_record(rollout_to_record(arrived))
    assert restored.region("westus").expected_at == at(15)


def test_no_estimate_before_the_primary_has_the_image() -> None:
    assert not needs_estimates(fresh())


def test_samples_survive_their_record() -> None:
    one = sample(12 * MB, 4.25, n=3)
    assert sample_from_record(sample_to_record(one)) == one
    unsized = sample(None, 1.5)
    assert sample_from_record(sample_to_record(unsized)) == unsized


def _probed(rollout: Rollout, times: int, now_s: float) -> Rollout:
    for _ in range(times):
        rollout = record_probe(rollout, "westus", ABSENT, at(now_s), POLICY, jitter=0.5)
    return rollout


def test_probes_close_in_on_the_expected_arrival_instead_of_backing_off_blind() -> None:
    # Twenty misses: the back-off alone is at its maximum (300 s).
    blind = _probed(_waiting(), 20, now_s=50)
    assert blind.region("westus").next_probe_at == at(50 + 300)
    model = ReplicationModel("westus", (sample(MB, 90.0),), None, None, 90.0)
    expecting = estimate_arrivals(_waiting(), {"westus": model}, POLICY)  # expected at t=100
    assert expecting.region("westus").expected_at == at(100)
    initial = POLICY.probe_initial_backoff_s
    window = ARRIVAL_GRACE * initial  # either side of the expected arrival
    before = _probed(expecting, 20, now_s=10)
    assert before.region("westus").next_probe_at == at(100 - window)  # where the window opens
    early = _probed(before, 1, now_s=100 - window)  # in the window: the initial pace
    assert early.region("westus").next_probe_at == at(100 - window + initial)
    due = _probed(before, 1, now_s=130)  # 30 s late, within the window: the initial pace
    assert due.region("westus").next_probe_at == at(130 + initial)
    late = _probed(before, 1, now_s=100 + ARRIVAL_GRACE * initial + 20)  # past the grace
    lateness = ARRIVAL_GRACE * initial + 20  # the next look within as long as it is late
    assert late.region("westus").next_probe_at == at(100 + 2 * lateness)


def test_an_estimate_brings_a_far_probe_forward_to_the_expected_arrival() -> None:
    far = _probed(_waiting(), 20, now_s=12)  # next probe at t=312
    model = ReplicationModel("westus", (sample(MB, 90.0),), None, None, 90.0)
    estimated = estimate_arrivals(far, {"westus": model}, POLICY)
    # Where the window around the expected arrival (t=100) opens.
    assert estimated.region("westus").next_probe_at == at(100) - POLICY.arrival_window


def test_a_window_that_opened_already_keeps_the_initial_pace_after_the_last_probe() -> None:
    # The first look found nothing at t=12; the image is expected at t=20, so the window
    # around it opened at t=-20: the next probe goes at the initial pace, not at once.
    looked = _probed(_waiting(), 1, now_s=12)
    blind = looked.region("westus").next_probe_at
    assert blind is not None and blind > at(12 + POLICY.probe_initial_backoff_s)
    model = ReplicationModel("westus", (sample(MB, 10.0),), None, None, 10.0)
    estimated = estimate_arrivals(looked, {"westus": model}, POLICY)
    assert estimated.region("westus").expected_at == at(20)
    assert estimated.region("westus").next_probe_at == at(12 + POLICY.probe_initial_backoff_s)
