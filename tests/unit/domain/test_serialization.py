"""The contract's rollout document and the full-fidelity storage record."""

from __future__ import annotations

import json

import pytest

from shared.domain.model import (
    DeploymentRef,
    ProbeEvidence,
    RegionState,
    Rollout,
    parse_rollout_id,
    rollout_id,
)
from shared.domain.push import Build, NoticeSource, PushNotice
from shared.domain.rollout import (
    EndpointClaim,
    give_up_deadline,
    new_rollout,
    record_deployable,
    record_deployment_created,
    record_endpoint_claim,
    record_probe,
    record_push,
    record_smoke_answer,
    record_step_crashed,
    record_tags_resolved,
    record_waiting,
    supersede,
    tick,
)
from shared.domain.serialization import (
    notice_from_record,
    notice_to_record,
    rollout_from_record,
    rollout_to_document,
    rollout_to_record,
)
from shared.domain.targets import DeploymentSettings, RegionOverride, Target
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from tests.unit.domain.builders import (
    DIGEST_A,
    DIGEST_B,
    POLICY,
    REGIONS,
    T0,
    WORKSPACE,
    at,
    claimed,
    confirmed,
    fresh,
    live,
    notice,
    replicated,
    started,
    verifying,
)

CONTRACT_KEYS = {
    "id",
    "registry",
    "repository",
    "digest",
    "tags",
    "state",
    "created_at",
    "updated_at",
    "regions",
}
REGION_KEYS = {
    "region",
    "primary",
    "state",
    "replicated_at",
    "deploy_started_at",
    "live_at",
    "probe_attempts",
    "last_error",
    "deployment",
}


def busy_rollout() -> Rollout:
    target = Target(
        "models-llm",
        DeploymentSettings("Standard_F4s_v2", 3, '{"x": 1}'),
        (("westus", RegionOverride(instance_count=1)),),
    )
    rollout = record_deployable_rollout(target)
    rollout = replicated(rollout, "eastus", at(1))
    rollout = live(rollout, "eastus", at(2), previous="blue")
    evidence = ProbeEvidence(
        404, (("x-ms-request-id", "1"), ("x-ms-request-id", "2")), "manifest unknown"
    )
    rollout = record_probe(
        rollout, "westus", ProbeOutcome(ProbeVerdict.ABSENT, evidence), at(3), POLICY, jitter=0.3
    )
    rollout = replicated(rollout, "northeurope", at(4))
    return rollout


def record_deployable_rollout(target: Target) -> Rollout:
    return confirmed(record_deployable(new_rollout(notice(), REGIONS, target, T0), 123, T0), T0)


def test_document_has_exactly_the_contract_keys_plus_extras() -> None:
    doc = rollout_to_document(busy_rollout())
    assert set(doc) >= CONTRACT_KEYS
    assert list(doc)[: len(CONTRACT_KEYS)] == [
        "id",
        "registry",
        "repository",
        "digest",
        "tags",
        "state",
        "created_at",
        "updated_at",
        "regions",
    ]
    for region in doc["regions"]:
        assert set(region) >= REGION_KEYS
    east = doc["regions"][0]
    assert east["region"] == "eastus" and east["primary"] is True
    assert east["state"] == "live"
    assert east["deployment"] == {
        "workspace": WORKSPACE,
        "endpoint": "models-llm",
        "name": "sha256-aaaaaaaaaaaa",
    }
    assert doc["regions"][1]["deployment"] is None
    assert doc["regions"][1]["replicated_at"] is None
    assert doc["state"] == "deploying"
    assert doc["created_at"] == "2025-03-01T12:00:00Z"
    assert doc["regions"][0]["live_at"] == "2025-03-01T12:00:02Z"
    json.dumps(doc)  # JSON-safe


def test_document_states_use_contract_words() -> None:
    assert rollout_to_document(fresh())["state"] == "replicating"
    ignored = new_rollout(notice(), REGIONS, None, T0)
    assert rollout_to_document(ignored)["state"] == "ignored"
    assert rollout_to_document(supersede(fresh(), by="x", now=at(1)))["state"] == "superseded"
    assert (
        rollout_to_document(fresh())["regions"][0]["state"]
        == RegionState.AWAITING_REPLICATION.value
    )


@pytest.mark.parametrize(
    "rollout", [fresh(), busy_rollout(), new_rollout(notice(tag=None), REGIONS, None, T0)]
)
def test_record_round_trips_through_json(rollout: Rollout) -> None:
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    assert rollout_from_record(record) == rollout


def test_record_with_deploying_region_and_outbox_round_trips() -> None:
    rollout = started(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    assert rollout.outbox
    back = rollout_from_record(json.loads(json.dumps(rollout_to_record(rollout))))
    assert back == rollout
    assert back.outbox[0].time == at(1)


def test_bad_record_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        rollout_from_record({"id": "x"})
    record = rollout_to_record(fresh())
    del record["regions"]
    with pytest.raises(ValueError, match="malformed"):
        rollout_from_record(record)


@pytest.mark.parametrize(
    ("registry", "repository"),
    [
        ("contoso.azurecr.io", "models/llm"),
        ("127.0.0.1:5001", "a/b/c_d/e--f/g.h"),
        ("Contoso.AzureCR.io", "x"),
    ],
)
def test_rollout_id_is_url_safe_stable_and_reversible(registry: str, repository: str) -> None:
    import re

    value = rollout_id(registry, repository, DIGEST_A)
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", value)
    assert value == rollout_id(registry, repository, DIGEST_A)
    assert parse_rollout_id(value) == (registry.lower(), repository, DIGEST_A)


def test_rollout_id_example_and_bad_ids() -> None:
    assert (
        rollout_id("127.0.0.1:5001", "models/llm", DIGEST_A)
        == "127.0.0.1_5001~models~llm~sha256-" + "a" * 64
    )
    for bad in ["", "a~b", "a~~sha256-x", "a~b~sha256"]:
        with pytest.raises(ValueError):
            parse_rollout_id(bad)


def test_deployment_ref_survives_round_trip() -> None:
    rollout = claimed(replicated(fresh(), "eastus", at(1)), "eastus", at(2))
    rollout = record_deployment_created(rollout, "eastus", "https://management/op/1", at(3))
    r = DeploymentRef(WORKSPACE, "models-llm", "sha256-aaaaaaaaaaaa", "https://management/op/1")
    assert rollout.region("eastus").deployment == r
    assert rollout_from_record(rollout_to_record(rollout)).region("eastus").deployment == r
    # the operation URL is storage detail, not part of the contract's document
    assert rollout_to_document(rollout)["regions"][0]["deployment"] == {
        "workspace": WORKSPACE,
        "endpoint": "models-llm",
        "name": "sha256-aaaaaaaaaaaa",
    }


def every_new_field() -> Rollout:
    """A rollout with every field of the redesign set to something other than its default."""
    rollout = new_rollout(notice(), REGIONS, busy_rollout().target, T0)
    rollout = record_deployable(rollout, 5, T0, platform_digest=DIGEST_B)
    rollout = record_push(rollout, notice(tag="latest"), at(1))
    rollout = record_tags_resolved(rollout, {"v1": DIGEST_A}, (), at(2))  # latest: pending
    later = give_up_deadline(rollout, POLICY)
    rollout = tick(rollout, later, POLICY)  # every region gave up...
    rollout = replicated(replicated(rollout, "eastus", later), "westus", later)  # ...two turned up
    rollout = verifying(rollout, "eastus", later, previous="blue")
    rollout = record_smoke_answer(rollout, "eastus", 503, "warming up", later)
    rollout = record_waiting(rollout, "westus", "endpoint models-llm is being changed by x", later)
    return record_step_crashed(rollout, "TypeError: boom", later, POLICY)


def test_every_field_of_the_redesign_round_trips() -> None:
    rollout = every_new_field()
    east, west, north = rollout.regions
    assert rollout.confirmed_at == at(2)
    assert rollout.pending_tags == ("latest",)
    assert rollout.tags_seen == ("v1",)
    assert rollout.platform_digest == DIGEST_B
    assert east.lease_until is not None and east.previous_rollout == "older"
    assert east.step_started_at is not None and east.smoke_attempts == 1
    assert west.waiting_for is not None
    assert north.gave_up
    assert (rollout.step_failures, rollout.step_error) == (1, "TypeError: boom")
    assert rollout.retry_after is not None
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    assert rollout_from_record(record) == rollout


def test_the_document_shows_what_the_registry_confirmed_and_what_waits() -> None:
    doc = rollout_to_document(every_new_field())
    assert doc["tags"] == ["v1"]
    assert doc["pending_tags"] == ["latest"]
    assert doc["confirmed_at"] == "2025-03-01T12:00:02Z"
    assert doc["platform_digest"] == DIGEST_B
    east, west, north = doc["regions"]
    assert west["waiting_for"] == "endpoint models-llm is being changed by x"
    assert west["last_error"] is None
    assert north["probing_stopped"] is True
    assert east["probing_stopped"] is False
    json.dumps(doc)


def test_a_record_written_before_the_redesign_still_reads() -> None:
    rollout = live(replicated(fresh(), "eastus", at(1)), "eastus", at(2), previous="blue")
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    for key in ("confirmed_at", "pending_tags", "tags_seen", "platform_digest"):
        del record[key]
    for key in ("step_failures", "step_error", "retry_after"):
        record.pop(key, None)
    for region in record["regions"]:
        for key in (
            "waiting_for",
            "probing_stopped",
            "step_started_at",
            "previous_rollout",
            "lease_until",
            "smoke_attempts",
        ):
            del region[key]
    old = rollout_from_record(record)
    assert old.confirmed_at is None and old.pending_tags == () and old.tags_seen == ()
    assert old.platform_digest is None
    assert (old.step_failures, old.step_error, old.retry_after) == (0, None, None)
    east = old.region("eastus")
    assert (east.waiting_for, east.gave_up, east.step_started_at) == (None, False, None)
    assert (east.previous_rollout, east.lease_until, east.smoke_attempts) == (None, None, 0)
    assert east.previous_deployment == "blue"
    assert east.state is RegionState.LIVE


def test_a_superseded_claim_round_trips() -> None:
    rollout = record_endpoint_claim(
        replicated(fresh(), "eastus", at(1)),
        "eastus",
        EndpointClaim(workspace=WORKSPACE, held_by="other"),
        at(2),
    )
    rollout = supersede(rollout, by="newer", now=at(3))
    assert rollout_from_record(json.loads(json.dumps(rollout_to_record(rollout)))) == rollout


@pytest.mark.parametrize(
    "waiting",
    [
        PushNotice("r.example", "models/llm", DIGEST_A, NoticeSource.ACR_WEBHOOK),
        PushNotice(
            "r.example:5001",
            "models/llm",
            DIGEST_B,
            NoticeSource.BUILD_WEBHOOK,
            tag="v2",
            media_type="application/vnd.oci.image.manifest.v1+json",
            size=512,
            pushed_at=T0,
            region_hint="westus",
            event_id="evt-1",
            build=Build("github-actions", "7421", "https://ci/7421", "abc", "https://src", T0),
        ),
    ],
)
def test_an_inbox_notice_round_trips_through_json(waiting: PushNotice) -> None:
    stored = json.loads(json.dumps(notice_to_record(waiting)))
    assert notice_from_record(stored) == waiting
