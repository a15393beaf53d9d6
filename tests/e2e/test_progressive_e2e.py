"""Progressive rollouts through the real stack: waves that soak, a verification failure made
real in the ARM emulator (a scoring fault) rolling a wave back, and traffic steps seen in
the emulator's routing.

Runs on the steered environment (tests/e2e/conftest.py, shared with test_operator_e2e.py),
whose rules (STEERED_TARGETS) stage repositories under prog/waves-* in two waves (westus,
then westeurope; every region soaks WAVES_SOAK_S seconds, checked every second, no failure
allowed) and move prog/steps-* traffic 10% -> 50% -> 100% in the primary (each step held
STEPS_HOLD_S seconds). Every test uses fresh repositories, so its endpoints are fresh. Everything is read
back through the contract's routes, the ARM emulator's endpoints, knobs and audit.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devenv.stack import Stack
from tests.e2e.conftest import STEERED_REGIONS, STEPS_HOLD_S, WAVES_SOAK_S, Pushed
from tests.e2e.local_api import ArmAudit, FunctionApp, http_request, parse_time, poll

pytestmark = pytest.mark.e2e

PRIMARY, FIRST_WAVE, SECOND_WAVE = STEERED_REGIONS  # eastus; westus; westeurope
LIVE_TIMEOUT_S = 120.0
ARM_API_VERSION = "2024-04-01"
ARM_AUTH = {"Authorization": "Bearer e2e"}
SCORING_CALLS = 10

Doc = dict[str, Any]
PushFn = Callable[[str, str], Pushed]
LogTail = Callable[[], str]


def say(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)


# --- reading the rollout ------------------------------------------------------------------


def region_of(doc: Doc, name: str) -> Doc:
    [region] = [r for r in doc["regions"] if r["region"] == name]
    found: Doc = region
    return found


def is_live(doc: Doc) -> bool:
    return doc["state"] == "live" and all(r["state"] == "live" for r in doc["regions"])


def recorded_id(api: FunctionApp, pushed: Pushed, log_tail: LogTail) -> str:
    doc = poll(
        lambda: api.rollout_of(pushed.repository, pushed.digest),
        lambda d: d is not None,
        timeout=30,
        what=f"{pushed.repository}:{pushed.tag} recorded",
        on_timeout=log_tail,
    )
    assert doc is not None
    rid: str = doc["id"]
    return rid


def wait_for(
    api: FunctionApp,
    rid: str,
    done: Callable[[Doc], bool],
    *,
    what: str,
    log_tail: LogTail,
    timeout: float = LIVE_TIMEOUT_S,
    seen: list[Doc] | None = None,
    interval: float = 0.25,
) -> Doc:
    """Read the rollout until `done`; every document read is appended to `seen`."""

    def read() -> Doc:
        doc = api.rollout(rid)
        if seen is not None:
            seen.append(doc)
        return doc

    return poll(
        read, done, timeout=timeout, what=f"{rid} {what}", on_timeout=log_tail, interval=interval
    )


# --- the ARM emulator: endpoints, scoring, knobs ------------------------------------------


class Arm:
    """The steered ARM emulator as a client sees it: endpoints, scoring by weight, knobs."""

    def __init__(self, stack: Stack) -> None:
        self.base = stack.env.arm_url
        self.context = stack.tls.client_context()
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}

    def _call(self, url: str, *, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
        headers = {**ARM_AUTH, "Content-Type": "application/json"}
        return http_request(url, method=method, data=body, headers=headers, context=self.context)

    def _endpoint_url(self, deployment: Doc) -> str:
        return f"{self.base}{deployment['workspace']}/onlineEndpoints/{deployment['endpoint']}"

    def traffic(self, deployment: Doc) -> dict[str, int]:
        """The traffic map of the endpoint `deployment` (a document's region deployment) is on."""
        status, body = self._call(f"{self._endpoint_url(deployment)}?api-version={ARM_API_VERSION}")
        assert status == 200, (status, body)
        traffic: dict[str, int] = body["properties"]["traffic"]
        return {name: weight for name, weight in traffic.items() if weight}

    def _scoring(self, deployment: Doc) -> tuple[str, str]:
        """The endpoint's scoring URI and its primary key (listKeys), as a client reads them."""
        key = (deployment["workspace"], deployment["endpoint"])
        if key not in self._keys:
            url = self._endpoint_url(deployment)
            status, endpoint = self._call(f"{url}?api-version={ARM_API_VERSION}")
            assert status == 200, (status, endpoint)
            status, keys = self._call(
                f"{url}/listKeys?api-version={ARM_API_VERSION}", method="POST", body=b"{}"
            )
            assert status == 200, (status, keys)
            self._keys[key] = (endpoint["properties"]["scoringUri"], keys["primaryKey"])
        return self._keys[key]

    def score(self, deployment: Doc, calls: int) -> list[Doc]:
        """Score the endpoint `calls` times without the deployment header (traffic decides)."""
        uri, key = self._scoring(deployment)
        answers = []
        for _ in range(calls):
            status, answer = http_request(
                uri,
                method="POST",
                data=b'{"input": "which model are you?"}',
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                context=self.context,
            )
            assert status == 200, (status, answer)
            answers.append(answer)
        return answers

    def scoring_fault(self, deployment: Doc, status: int, message: str) -> Doc:
        """Every scoring call `deployment` serves answers `status` from now on."""
        workspace = deployment["workspace"].rstrip("/").rsplit("/", 1)[-1]
        path = "/".join(
            urllib.parse.quote(part, safe="")
            for part in (workspace, deployment["endpoint"], deployment["name"])
        )
        answer_status, answer = self._call(
            f"{self.base}/emulator/deployments/{path}/scoring",
            method="POST",
            body=json.dumps({"status": status, "message": message}).encode(),
        )
        assert answer_status == 200, (answer_status, answer)
        result: Doc = answer
        return result


def digests(answers: list[Doc]) -> list[str]:
    return [a["digest"] for a in answers]


def traffic_changes(audit: ArmAudit, region: str, endpoint: str) -> list[Doc]:
    """The endpoint's traffic_changed records in order, each `traffic` without zero weights."""
    return [
        {**r, "traffic": {name: weight for name, weight in r["traffic"].items() if weight}}
        for r in audit.records()
        if r["action"] == "traffic_changed"
        and r.get("region") == region
        and r.get("endpoint") == endpoint
    ]


def first_create(audit: ArmAudit, digest: str, region: str) -> float | None:
    created = [
        parse_time(r["timestamp"])
        for r in audit.records(digest=digest)
        if r["action"] == "deployment_create" and r["region"] == region
    ]
    return min(created) if created else None


# --- fixtures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A repository whose v1 (the first rollout: nothing served before) is live everywhere."""

    repository: str
    v1: Pushed
    doc: Doc  # v1's live document

    def deployment(self, region: str) -> Doc:
        found: Doc = region_of(self.doc, region)["deployment"]
        return found


@pytest.fixture(scope="module")
def api(steered_app: FunctionApp) -> FunctionApp:
    return steered_app


@pytest.fixture(scope="module")
def arm(steered_stack: Stack) -> Arm:
    return Arm(steered_stack)


def live_baselines(
    api: FunctionApp, push: PushFn, log_tail: LogTail, tags: dict[str, str]
) -> dict[str, Baseline]:
    """Push the image tagged tags[prefix] to a fresh repository per prefix (all at once) and
    wait until every one is live."""
    started = time.monotonic()
    pushed = {p: push(f"{p}-{uuid.uuid4().hex[:8]}", tag) for p, tag in tags.items()}
    ids = {p: recorded_id(api, v1, log_tail) for p, v1 in pushed.items()}
    docs = poll(
        lambda: {p: api.rollout(rid) for p, rid in ids.items()},
        lambda found: all(is_live(d) for d in found.values()),
        timeout=LIVE_TIMEOUT_S,
        what=f"first rollouts live everywhere: {sorted(ids.values())}",
        on_timeout=log_tail,
        interval=0.5,
    )
    say(started, f"first rollouts of {', '.join(v.repository for v in pushed.values())} live")
    for doc in docs.values():
        # Nothing served these endpoints before: all traffic moved at once, nothing soaked.
        assert all(r["traffic_percent"] == 100 for r in doc["regions"]), doc["regions"]
    return {p: Baseline(pushed[p].repository, pushed[p], docs[p]) for p in tags}


@pytest.fixture(scope="module")
def baselines(
    api: FunctionApp, steered_push: PushFn, steered_log_tail: LogTail
) -> dict[str, Baseline]:
    """The first rollout (v1) of each test's repository, pushed together so that they overlap.
    The prog/waves-* ones are tagged `base`: a plain rule rolls them out (their three soaked
    waves would cost half a minute more); prog/steps-z's goes through its own rule."""
    return live_baselines(
        api,
        steered_push,
        steered_log_tail,
        {"prog/waves-x": "base", "prog/waves-y": "base", "prog/steps-z": "v1"},
    )


# --- 1. two waves with a soak ---------------------------------------------------------------


def test_the_second_wave_starts_only_once_the_first_has_soaked(
    api: FunctionApp,
    baselines: dict[str, Baseline],
    steered_push: PushFn,
    steered_audit: ArmAudit,
    steered_log_tail: LogTail,
) -> None:
    started = time.monotonic()
    base = baselines["prog/waves-x"]
    v2 = steered_push(base.repository, "v2")
    rid = recorded_id(api, v2, steered_log_tail)
    seen: list[Doc] = []
    live = wait_for(api, rid, is_live, what="v2 live", log_tail=steered_log_tail, seen=seen)
    say(started, f"v2 live after {len(seen)} documents read")
    for region, wave in ((PRIMARY, 0), (FIRST_WAVE, 1), (SECOND_WAVE, 2)):
        shown = region_of(live, region)
        assert shown["wave"] == wave, live["regions"]
        assert shown["deployment"]["endpoint"] == base.deployment(region)["endpoint"], shown

    # While westus soaked, westeurope (replicated meanwhile) waited for the previous wave.
    both = [
        d
        for d in seen
        if region_of(d, FIRST_WAVE)["state"] == "soaking"
        and region_of(d, FIRST_WAVE)["soaking"] is True
        and region_of(d, SECOND_WAVE)["waiting_for"] == "previous wave"
    ]
    assert both, [
        (d["state"], [(r["region"], r["state"], r["waiting_for"]) for r in d["regions"]])
        for d in seen
    ]
    soak_ends = {region_of(d, FIRST_WAVE)["soak_until"] for d in both}
    assert len(soak_ends) == 1, soak_ends
    soak_until = parse_time(soak_ends.pop())
    shown = region_of(live, FIRST_WAVE)
    assert shown["soak_until"] is None or parse_time(shown["soak_until"]) == soak_until, shown
    assert all(r["traffic_percent"] == 100 for r in live["regions"]), live["regions"]

    # The ARM audit: westeurope's v2 deployment was created only after westus soaked.
    westus = region_of(live, FIRST_WAVE)["deployment"]
    shifted = [
        parse_time(r["timestamp"])
        for r in traffic_changes(steered_audit, FIRST_WAVE, westus["endpoint"])
        if r["traffic"] == {westus["name"]: 100}
    ]
    assert len(shifted) == 1, shifted
    created = first_create(steered_audit, v2.digest, SECOND_WAVE)
    assert created is not None, "no deployment_create for v2 in westeurope"
    assert created >= soak_until, (created, soak_until)
    assert created >= shifted[0] + WAVES_SOAK_S, (created, shifted[0])
    # ... and westus's only once the primary (wave 0) soaked.
    primary_soaks = {
        region_of(d, PRIMARY)["soak_until"] for d in seen if region_of(d, PRIMARY)["soaking"]
    }
    westus_created = first_create(steered_audit, v2.digest, FIRST_WAVE)
    assert westus_created is not None
    for end in primary_soaks:
        assert westus_created >= parse_time(end), (westus_created, end)
    say(started, "checked")


# --- 2. a failing verification during the soak rolls the wave back -------------------------


def test_a_scoring_fault_during_the_soak_rolls_the_wave_back_and_stops_the_rollout(
    api: FunctionApp,
    arm: Arm,
    baselines: dict[str, Baseline],
    steered_push: PushFn,
    steered_audit: ArmAudit,
    steered_log_tail: LogTail,
) -> None:
    started = time.monotonic()
    base = baselines["prog/waves-y"]
    v2 = steered_push(base.repository, "v2")
    rid = recorded_id(api, v2, steered_log_tail)

    def westus_verified(doc: Doc) -> bool:
        # Its smoke request passed: traffic is moving to it, or it soaks. The fault set from
        # here on is in place for the soak's first checks, whatever the timer's pace.
        westus = region_of(doc, FIRST_WAVE)
        return bool(westus["state"] == "soaking" or westus["deploy_step"] == "shifting_traffic")

    soaking = wait_for(
        api, rid, westus_verified, what="westus verified", log_tail=steered_log_tail, interval=0.1
    )
    ours = region_of(soaking, FIRST_WAVE)["deployment"]
    previous = base.deployment(FIRST_WAVE)
    assert ours["endpoint"] == previous["endpoint"] and ours["name"] != previous["name"]
    fault = arm.scoring_fault(ours, 500, "model server broke during the soak")
    assert fault["scoringFault"]["status"] == 500, fault
    soak_until = region_of(soaking, FIRST_WAVE)["soak_until"]
    say(started, f"westus verified on {ours['name']} (soak until {soak_until}); fault set")

    def rolled_back(doc: Doc) -> bool:
        shown = (doc["state"], region_of(doc, FIRST_WAVE)["state"])
        return shown == ("rolled_back", "rolled_back")

    done = wait_for(api, rid, rolled_back, what="rolled back", log_tail=steered_log_tail)
    say(started, f"rolled back: {done['rollback_reason']}")
    assert "verification" in (done["rollback_reason"] or ""), done["rollback_reason"]
    assert FIRST_WAVE in done["rollback_reason"], done["rollback_reason"]
    assert done["rolled_back_at"], done
    # The second wave never started; the primary (wave 0) keeps v2.
    second = region_of(done, SECOND_WAVE)
    assert second["state"] != "live" and second["deployment"] is None, second
    assert region_of(done, PRIMARY)["state"] == "live", done["regions"]

    # Traffic went back to v1 after the fault was set, and the v2 deployment was deleted.
    records = steered_audit.records()
    [fault_set] = [
        r
        for r in records
        if r["action"] == "scoring_fault_set"
        and (r["region"], r["endpoint"], r["deployment"])
        == (FIRST_WAVE, ours["endpoint"], ours["name"])
    ]
    restored = [
        r
        for r in traffic_changes(steered_audit, FIRST_WAVE, ours["endpoint"])
        if r["traffic"] == {previous["name"]: 100}
        and parse_time(r["timestamp"]) >= parse_time(fault_set["timestamp"])
    ]
    assert restored, traffic_changes(steered_audit, FIRST_WAVE, ours["endpoint"])
    poll(
        lambda: [
            r
            for r in steered_audit.records(digest=v2.digest)
            if r["action"] == "deployment_deleted" and r["region"] == FIRST_WAVE
        ],
        lambda deleted: [r["deployment"] for r in deleted] == [ours["name"]],
        timeout=60,
        what=f"{ours['name']} deleted in westus",
        on_timeout=steered_log_tail,
        interval=0.5,
    )
    assert first_create(steered_audit, v2.digest, SECOND_WAVE) is None, "v2 created in westeurope"

    # A client of westus's endpoint gets v1 again; eastus's still gets v2.
    assert arm.traffic(previous) == {previous["name"]: 100}
    assert set(digests(arm.score(previous, 3))) == {base.v1.digest}
    eastus = region_of(done, PRIMARY)["deployment"]
    assert arm.traffic(eastus) == {eastus["name"]: 100}
    assert set(digests(arm.score(eastus, 3))) == {v2.digest}
    say(started, "checked")


# --- 3. traffic steps, seen in the emulator's routing ---------------------------------------


class StepMissed(Exception):
    """A traffic step ended before the test could score it in full."""


def sample_step(
    api: FunctionApp, arm: Arm, rid: str, percent: int, old: Doc, log_tail: LogTail
) -> tuple[str, list[Doc]]:
    """While eastus holds `percent` (the document and ARM say so before and after the calls),
    score its endpoint SCORING_CALLS times: the new deployment's name and the answers.
    StepMissed when the step ended before a full sample was taken."""

    def holding(doc: Doc) -> bool:
        region = region_of(doc, PRIMARY)
        return bool(
            region["deploy_step"] == "holding_step" and region["traffic_percent"] == percent
        )

    def reached(doc: Doc) -> bool:
        region = region_of(doc, PRIMARY)
        return (
            holding(doc)
            or region["traffic_percent"] > percent
            or region["state"] in ("live", "failed", "rolled_back", "timed_out")
        )

    for _ in range(5):
        doc = wait_for(
            api, rid, reached, what=f"eastus at {percent}%", log_tail=log_tail, interval=0.1
        )
        region = region_of(doc, PRIMARY)
        if not holding(doc):
            raise StepMissed(f"eastus went past its {percent}% step unseen: {region}")
        assert region["waiting_for"] == "traffic step", region
        ours: Doc = region["deployment"]
        split = {ours["name"]: percent, old["name"]: 100 - percent}
        before = arm.traffic(ours)
        answers = arm.score(ours, SCORING_CALLS)
        after_doc, after = api.rollout(rid), arm.traffic(ours)
        still = (
            holding(after_doc)
            and region_of(after_doc, PRIMARY)["step_until"] == region["step_until"]
        )
        if still and before == after == split:
            return ours["name"], answers
        if not holding(after_doc):
            raise StepMissed(f"eastus's {percent}% step ended while the test scored it")
        print(f"{percent}% step: ARM showed {before} then {after} around the calls; again")
    raise AssertionError(f"eastus's {percent}% step never held still for {SCORING_CALLS} calls")


def served(answers: list[Doc], name: str, digest: str) -> int:
    """How many answers came from deployment `name` (which serves `digest`)."""
    ours = [a for a in answers if a["deployment"] == name]
    assert all(a["digest"] == digest for a in ours), ours
    return len(ours)


def test_traffic_steps_route_one_call_in_ten_then_half_then_all_to_the_new_deployment(
    api: FunctionApp,
    arm: Arm,
    baselines: dict[str, Baseline],
    steered_push: PushFn,
    steered_audit: ArmAudit,
    steered_log_tail: LogTail,
) -> None:
    started = time.monotonic()
    base = baselines["prog/steps-z"]
    for attempt in range(2):
        v2 = steered_push(base.repository, "v2")
        rid = recorded_id(api, v2, steered_log_tail)
        old = base.deployment(PRIMARY)
        try:
            name, at_10 = sample_step(api, arm, rid, 10, old, steered_log_tail)
            say(started, f"10% step: {[a['deployment'] for a in at_10]}")
            name_50, at_50 = sample_step(api, arm, rid, 50, old, steered_log_tail)
            say(started, f"50% step: {[a['deployment'] for a in at_50]}")
            break
        except StepMissed as missed:
            # The machine stalled the test for a whole step: once more with a fresh repository.
            assert attempt == 0, missed
            print(f"{missed}; again with a fresh repository", flush=True)
            base = live_baselines(api, steered_push, steered_log_tail, {"prog/steps-z": "v1"})[
                "prog/steps-z"
            ]
    assert name_50 == name
    old_name, v1_digest = old["name"], base.v1.digest
    assert (served(at_10, name, v2.digest), served(at_10, old_name, v1_digest)) == (1, 9), at_10
    assert (served(at_50, name, v2.digest), served(at_50, old_name, v1_digest)) == (5, 5), at_50

    live = wait_for(api, rid, is_live, what="v2 live", log_tail=steered_log_tail)
    say(started, "v2 live")
    # The rule deploys to the primary only.
    assert [r["region"] for r in live["regions"]] == [PRIMARY], live["regions"]
    created = {r["region"] for r in steered_audit.records(digest=v2.digest)}
    assert created == {PRIMARY}, created
    ours, previous = region_of(live, PRIMARY)["deployment"], old
    assert ours["endpoint"] == previous["endpoint"], (ours, previous)
    records = traffic_changes(steered_audit, PRIMARY, ours["endpoint"])
    changes = [r["traffic"] for r in records]
    assert changes == [
        {previous["name"]: 100},  # v1: nothing served before, all at once
        {ours["name"]: 10, previous["name"]: 90},
        {ours["name"]: 50, previous["name"]: 50},
        {ours["name"]: 100},
    ], changes
    # Each step below 100 held at least step_seconds before the next traffic change.
    at = [parse_time(r["timestamp"]) for r in records]
    assert at[2] - at[1] >= STEPS_HOLD_S and at[3] - at[2] >= STEPS_HOLD_S, at
    assert set(digests(arm.score(region_of(live, PRIMARY)["deployment"], 4))) == {v2.digest}
    say(started, "checked")
