"""Decisions per second of the pure state machine: one rollout from push to live, all regions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from benchmarks.figures import machine, stop_cleanly_on_sigterm
from shared.domain import rollout as m
from shared.domain.push import NoticeSource, PushNotice
from shared.domain.targets import CATCH_ALL_RULE, match_target
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict

REGIONS = ("eastus", "westus", "westeurope", "northeurope", "southeastasia")
ROLLOUTS = 2000


def one_rollout(i: int, policy: m.RolloutPolicy) -> int:
    """Drive one rollout to live; return how many decisions (next_actions calls) it took."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    digest = "sha256:" + f"{i:064x}"
    notice = PushNotice(
        "contoso.azurecr.io", "models/llm", digest, NoticeSource.EVENTGRID, tag="v1", pushed_at=now
    )
    r = m.new_rollout(notice, REGIONS, match_target([CATCH_ALL_RULE], "models/llm", "v1"), now)
    r = m.record_deployable(r, 1000, now)
    r = m.record_tags_resolved(r, {"v1": digest}, (), now)
    decisions = 0
    for _ in range(50):
        now += timedelta(seconds=10)
        r = m.tick(r, now, policy)
        actions = m.next_actions(r, now, policy)
        decisions += 1
        if not actions:
            break
        for action in actions:
            match action:
                case m.ProbeRegion(region=region):
                    r = m.record_probe(
                        r, region, ProbeOutcome(ProbeVerdict.PRESENT), now, policy, jitter=0.5
                    )
                case m.ClaimEndpoint(region=region):
                    claim = m.EndpointClaim(
                        workspace="ws",
                        lease_until=now + timedelta(hours=2),
                        serving_deployment="old",
                    )
                    r = m.record_endpoint_claim(r, region, claim, now)
                case m.CreateDeployment(region=region):
                    r = m.record_deployment_created(r, region, None, now)
                case m.CheckDeployment(region=region):
                    r = m.record_provisioning_succeeded(r, region, now)
                case m.SmokeTest(region=region):
                    r = m.record_smoke_passed(r, region, now)
                case m.ShiftTraffic(region=region):
                    r = m.record_traffic_shifted(r, region, now)
                case m.DeletePrevious(region=region):
                    r = m.record_previous_deleted(r, region, now)
                case m.ReleaseLease(region=region):
                    r = m.record_lease_released(r, region, now)
        r = m.mark_published(r, [e.id for e in r.outbox])
    assert r.state.value == "live", r.state
    return decisions


def main() -> None:
    policy = m.RolloutPolicy()
    started = time.perf_counter()
    decisions = sum(one_rollout(i, policy) for i in range(ROLLOUTS))
    elapsed = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(
        f"{ROLLOUTS} rollouts x {len(REGIONS)} regions driven push -> live by the pure state machine"
    )
    print(f"  {decisions / elapsed:8.0f} decision steps/s, {ROLLOUTS / elapsed:6.0f} rollouts/s")


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    main()
