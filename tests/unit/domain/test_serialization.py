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
from shared.domain.rollout import new_rollout, record_deployment_started, record_probe, supersede
from shared.domain.serialization import rollout_from_record, rollout_to_document, rollout_to_record
from shared.domain.targets import DeploymentSettings, RegionOverride, Target
from shared.domain.verdicts import ProbeOutcome, ProbeVerdict
from tests.unit.domain.builders import (
    DIGEST_A,
    POLICY,
    REGIONS,
    T0,
    at,
    fresh,
    live,
    notice,
    ref,
    replicated,
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


def record_deployable_rollout(target: Target):  # type: ignore[no-untyped-def]
    from shared.domain.rollout import record_deployable

    return record_deployable(new_rollout(notice(), REGIONS, target, T0), 123, T0)


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
        "workspace": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-eastus",
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
def test_record_round_trips_through_json(rollout) -> None:  # type: ignore[no-untyped-def]
    record = json.loads(json.dumps(rollout_to_record(rollout)))
    assert rollout_from_record(record) == rollout


def test_record_with_deploying_region_and_outbox_round_trips() -> None:
    rollout = record_deployment_started(
        replicated(fresh(), "eastus", at(1)), "eastus", ref("eastus"), at(2)
    )
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
    r = DeploymentRef("ws", "ep", "dep")
    rollout = record_deployment_started(replicated(fresh(), "eastus", at(1)), "eastus", r, at(2))
    assert rollout_from_record(rollout_to_record(rollout)).region("eastus").deployment == r
