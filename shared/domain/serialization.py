"""Rollouts to and from JSON-safe dicts: the contract's rollout document and the full storage record.

The document is what the status API answers (the contract's keys, plus extras).
The record keeps every field so `rollout_from_record(rollout_to_record(r)) == r`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain import delivery
from shared.domain.events import EventType, OutgoingEvent
from shared.domain.model import (
    ApprovalGate,
    DeploymentRef,
    DeployStep,
    HistoryEntry,
    OperationPace,
    OperatorAction,
    ProbeEvidence,
    RegionProgress,
    RegionState,
    Rollout,
)
from shared.domain.push import Build, NoticeSource, PushNotice
from shared.domain.replication import ReplicationModel, ReplicationSample
from shared.domain.rollout import build_to_document, stopped
from shared.domain.steering import history_to_document
from shared.domain.targets import (
    DEFAULT_APPROVAL_TIMEOUT_S,
    ApprovalMode,
    Delivery,
    DeploymentSettings,
    RegionOverride,
    Target,
    VerifyPolicy,
)
from shared.domain.timestamps import format_timestamp, parse_timestamp

RECORD_VERSION = 1


def _ts(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _parse_ts(value: Any) -> datetime | None:
    return parse_timestamp(value) if value is not None else None


def _deployment(ref: DeploymentRef | None) -> dict[str, str] | None:
    if ref is None:
        return None
    return {"workspace": ref.workspace, "endpoint": ref.endpoint, "name": ref.name}


def _evidence(evidence: ProbeEvidence | None) -> dict[str, Any] | None:
    if evidence is None:
        return None
    return {
        "status": evidence.status,
        "headers": dict(evidence.headers),
        "detail": evidence.detail,
    }


# --- the contract's document ----------------------------------------------------------


def region_to_document(progress: RegionProgress, rollout: Rollout | None = None) -> dict[str, Any]:
    """One entry of the document's `regions` (`rollout` adds what the rule decides: the
    region's wave and what it waits for)."""
    document = {
        "region": progress.region,
        "primary": progress.primary,
        "state": progress.shown_state.value,
        "replicated_at": _ts(progress.replicated_at),
        "eta": _ts(progress.eta),
        "deploy_started_at": _ts(progress.deploy_started_at),
        "live_at": _ts(progress.live_at),
        "probe_attempts": progress.probe_attempts,
        "last_error": progress.last_error,
        "deployment": _deployment(progress.deployment),
        # Extras (the contract allows more fields).
        "deploy_step": progress.deploy_step.value if progress.deploy_step else None,
        "next_probe_at": _ts(progress.next_probe_at),
        "timed_out_at": _ts(progress.timed_out_at),
        "probe_evidence": _evidence(progress.evidence),
        "waiting_for": progress.waiting_for,
        "probing_stopped": progress.gave_up,
        "attempt": progress.attempt,
        # An operator's hold, and the state under it (`state` says `held`).
        "held": progress.operator_hold,
        "held_in": progress.state.value if progress.shown_state is not progress.state else None,
        "retry_requested": progress.retry_requested,
        "rollback_requested": progress.rollback_requested,
        "restore_to": _deployment(progress.restore_to),
        # Progressive delivery.
        "traffic_percent": progress.traffic_percent,
        "soaking": progress.state is RegionState.SOAKING,
        "soak_until": _ts(progress.soak_until),
        "step_until": _ts(progress.step_until),
        "next_verify_at": _ts(progress.next_verify_at),
        "verify_passes": progress.verify_passes,
        "verify_failures": progress.verify_failures,
        "poll_every_s": progress.poll_every_s,
    }
    if rollout is not None:
        document["wave"] = delivery.wave_of(rollout, progress)
        document["waiting_for"] = waiting_for(rollout, progress)
    return document


def waiting_for(rollout: Rollout, progress: RegionProgress) -> str | None:
    """What the region waits for, in words an operator acts on: a recorded wait (an endpoint
    being created, another rollout's lease...) or what the rules make it wait for."""
    if progress.waiting_for:
        return progress.waiting_for
    if stopped(rollout):
        return None
    state = progress.shown_state
    if state is RegionState.HELD:
        return "operator hold" if progress.operator_hold else "the primary region (it failed)"
    if state is RegionState.AWAITING_REPLICATION:
        return "replica"
    if state is RegionState.AWAITING_APPROVAL:
        return "approval"
    if state is RegionState.SOAKING:
        return "soak"
    if progress.deploy_step is DeployStep.HOLDING_STEP:
        return "traffic step"
    if state is RegionState.REPLICATED and not delivery.wave_may_start(
        rollout, delivery.wave_of(rollout, progress)
    ):
        return "previous wave"
    return None


def _gate(gate: ApprovalGate) -> dict[str, Any]:
    return {
        "wave": gate.wave,
        "opened_at": _ts(gate.opened_at),
        "approved_at": _ts(gate.approved_at),
        "approved_by": gate.approved_by,
    }


def rollout_to_document(rollout: Rollout) -> dict[str, Any]:
    """The contract's rollout document (every contract key, then extras)."""
    return {
        "id": rollout.id,
        "registry": rollout.registry,
        "repository": rollout.repository,
        "digest": rollout.digest,
        "tags": list(rollout.tags),
        "state": rollout.state.value,
        "created_at": _ts(rollout.created_at),
        "updated_at": _ts(rollout.updated_at),
        "regions": [region_to_document(r, rollout) for r in rollout.regions],
        # Extras.
        "generation": rollout.generation,
        "pushed_at": _ts(rollout.pushed_at),
        "endpoint": rollout.target.endpoint if rollout.target else None,
        "ignored_reason": rollout.ignored_reason,
        "superseded_by": rollout.superseded_by,
        "confirmed_at": _ts(rollout.confirmed_at),
        "pending_tags": list(rollout.pending_tags),
        "platform_digest": rollout.platform_digest,
        "step_error": rollout.step_error,
        "deleted_from_registry_at": _ts(rollout.deleted_at),
        "builds": [build_to_document(b) for b in rollout.builds],
        "approval": rollout.target.approval.value if rollout.target else None,
        "approvals": [_gate(g) for g in rollout.gates],
        "rolled_back_at": _ts(rollout.rolled_back_at),
        "rollback_reason": rollout.rollback_reason,
        "delivery": _delivery_record(rollout.target.delivery) if rollout.target else None,
        "history": [history_to_document(e) for e in rollout.history],
    }


# --- the storage record ---------------------------------------------------------------


def _settings_record(settings: DeploymentSettings) -> dict[str, Any]:
    return {
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "smoke_request": settings.smoke_request,
    }


def _target_record(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {
        "endpoint": target.endpoint,
        "approval": target.approval.value,
        "approval_timeout_s": target.approval_timeout_s,
        "settings": _settings_record(target.settings),
        "delivery": _delivery_record(target.delivery),
        "region_overrides": [
            {
                "region": region,
                "instance_type": o.instance_type,
                "instance_count": o.instance_count,
                "smoke_request": o.smoke_request,
            }
            for region, o in target.region_overrides
        ],
    }


def _delivery_record(delivery: Delivery) -> dict[str, Any]:
    return {
        "regions": list(delivery.regions) if delivery.regions is not None else None,
        "waves": [list(wave) for wave in delivery.waves],
        "soak_seconds": delivery.soak_s,
        "verify": {
            "smoke_request": delivery.verify.smoke_request,
            "interval_seconds": delivery.verify.interval_s,
            "max_failures": delivery.verify.max_failures,
        },
        "traffic_steps": list(delivery.traffic_steps),
        "step_seconds": delivery.step_s,
    }


def _delivery_from(record: dict[str, Any] | None) -> Delivery:
    if record is None:
        return Delivery()  # a record older than progressive delivery: the plain rollout
    verify = record["verify"]
    regions = record["regions"]
    return Delivery(
        regions=tuple(regions) if regions is not None else None,
        waves=tuple(tuple(wave) for wave in record["waves"]),
        soak_s=float(record["soak_seconds"]),
        verify=VerifyPolicy(
            smoke_request=verify["smoke_request"],
            interval_s=float(verify["interval_seconds"]),
            max_failures=int(verify["max_failures"]),
        ),
        traffic_steps=tuple(int(p) for p in record["traffic_steps"]),
        step_s=float(record["step_seconds"]),
    )


def _target_from(record: dict[str, Any] | None) -> Target | None:
    if record is None:
        return None
    settings = record["settings"]
    return Target(
        endpoint=record["endpoint"],
        settings=DeploymentSettings(
            instance_type=settings["instance_type"],
            instance_count=settings["instance_count"],
            smoke_request=settings["smoke_request"],
        ),
        region_overrides=tuple(
            (
                o["region"],
                RegionOverride(
                    instance_type=o["instance_type"],
                    instance_count=o["instance_count"],
                    smoke_request=o["smoke_request"],
                ),
            )
            for o in record["region_overrides"]
        ),
        approval=ApprovalMode(record.get("approval", ApprovalMode.NONE.value)),
        approval_timeout_s=float(record.get("approval_timeout_s", DEFAULT_APPROVAL_TIMEOUT_S)),
        delivery=_delivery_from(record.get("delivery")),
    )


def _region_record(progress: RegionProgress) -> dict[str, Any]:
    record = region_to_document(progress)
    record["previous_deployment"] = progress.previous_deployment
    record["previous_rollout"] = progress.previous_rollout
    record["step_started_at"] = _ts(progress.step_started_at)
    record["lease_until"] = _ts(progress.lease_until)
    record["smoke_attempts"] = progress.smoke_attempts
    record["state"] = progress.state.value  # the state under an operator's hold
    record["attempt_started_at"] = _ts(progress.attempt_started_at)
    record["resumed_at"] = _ts(progress.resumed_at)
    record["restore_image"] = progress.restore_image
    record["waiting_for"] = progress.waiting_for  # the recorded wait, never a derived one
    record["expected_at"] = _ts(progress.expected_at)
    record["absent_at"] = _ts(progress.absent_at)
    pace = progress.operation_pace
    record["operation_pace"] = (
        {"step": pace.step.value, "every_s": pace.every_s} if pace is not None else None
    )
    if progress.deployment is not None and progress.deployment.operation:
        record["deployment"]["operation"] = progress.deployment.operation
    if progress.evidence is not None:
        # Header order and repeats are kept exactly (a dict would fold them).
        record["probe_evidence"]["headers"] = [list(h) for h in progress.evidence.headers]
    return record


def _region_from(record: dict[str, Any]) -> RegionProgress:
    deployment = record["deployment"]
    evidence = record["probe_evidence"]
    step = record["deploy_step"]
    return RegionProgress(
        region=record["region"],
        primary=record["primary"],
        state=RegionState(record["state"]),
        replicated_at=_parse_ts(record["replicated_at"]),
        deploy_started_at=_parse_ts(record["deploy_started_at"]),
        live_at=_parse_ts(record["live_at"]),
        probe_attempts=record["probe_attempts"],
        next_probe_at=_parse_ts(record["next_probe_at"]),
        last_error=record["last_error"],
        evidence=(
            ProbeEvidence(
                status=evidence["status"],
                headers=tuple((str(k), str(v)) for k, v in evidence["headers"]),
                detail=evidence["detail"],
            )
            if evidence is not None
            else None
        ),
        deployment=DeploymentRef(**deployment) if deployment is not None else None,
        deploy_step=DeployStep(step) if step is not None else None,
        previous_deployment=record["previous_deployment"],
        timed_out_at=_parse_ts(record["timed_out_at"]),
        # Fields added after record version 1 default when an older record lacks them.
        waiting_for=record.get("waiting_for"),
        gave_up=bool(record.get("probing_stopped", False)),
        step_started_at=_parse_ts(record.get("step_started_at")),
        previous_rollout=record.get("previous_rollout"),
        lease_until=_parse_ts(record.get("lease_until")),
        smoke_attempts=int(record.get("smoke_attempts", 0)),
        attempt=int(record.get("attempt", 1)),
        attempt_started_at=_parse_ts(record.get("attempt_started_at")),
        operator_hold=bool(record.get("held", False)),
        resumed_at=_parse_ts(record.get("resumed_at")),
        retry_requested=bool(record.get("retry_requested", False)),
        rollback_requested=bool(record.get("rollback_requested", False)),
        restore_to=DeploymentRef(**record["restore_to"]) if record.get("restore_to") else None,
        restore_image=record.get("restore_image"),
        traffic_percent=int(record.get("traffic_percent", _served_share(record))),
        step_until=_parse_ts(record.get("step_until")),
        soak_until=_parse_ts(record.get("soak_until")),
        next_verify_at=_parse_ts(record.get("next_verify_at")),
        verify_passes=int(record.get("verify_passes", 0)),
        verify_failures=int(record.get("verify_failures", 0)),
        operation_pace=_pace_from(record.get("operation_pace")),
        expected_at=_parse_ts(record.get("expected_at")),
        absent_at=_parse_ts(record.get("absent_at")),
    )


def _pace_from(record: Any) -> OperationPace | None:
    if not isinstance(record, dict):
        return None
    return OperationPace(DeployStep(record["step"]), float(record["every_s"]))


def _served_share(record: dict[str, Any]) -> int:
    """For a record older than traffic steps: a region live now has all the traffic."""
    return 100 if record.get("state") == RegionState.LIVE.value else 0


def _build_from(record: dict[str, Any]) -> Build:
    return Build(
        system=record.get("system"),
        id=record.get("id"),
        url=record.get("url"),
        commit=record.get("commit"),
        source=record.get("source"),
        received_at=_parse_ts(record.get("received_at")),
    )


def _gate_from(record: dict[str, Any]) -> ApprovalGate:
    return ApprovalGate(
        wave=int(record["wave"]),
        opened_at=parse_timestamp(record["opened_at"]),
        approved_at=_parse_ts(record.get("approved_at")),
        approved_by=record.get("approved_by"),
    )


def _history_from(record: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        at=parse_timestamp(record["at"]),
        action=OperatorAction(record["action"]),
        actor=record["actor"],
        actor_verified=bool(record["actor_verified"]),
        reason=record.get("reason"),
        regions=tuple(record.get("regions", ())),
        outcome=record["outcome"],
        message=record.get("message"),
        request_id=record["request_id"],
    )


def event_to_record(event: OutgoingEvent) -> dict[str, Any]:
    """An outbox event as a JSON-safe dict."""
    return {
        "id": event.id,
        "type": event.type.value,
        "subject": event.subject,
        "time": format_timestamp(event.time),
        "region": event.region,
        "data": event.data,
    }


def event_from_record(record: dict[str, Any]) -> OutgoingEvent:
    """Inverse of `event_to_record`."""
    return OutgoingEvent(
        id=record["id"],
        type=EventType(record["type"]),
        subject=record["subject"],
        time=parse_timestamp(record["time"]),
        region=record["region"],
        data=dict(record["data"]),
    )


def rollout_to_record(rollout: Rollout) -> dict[str, Any]:
    """Every field of `rollout` as a JSON-safe dict (datetimes as RFC 3339 UTC)."""
    return {
        "record_version": RECORD_VERSION,
        "id": rollout.id,
        "registry": rollout.registry,
        "repository": rollout.repository,
        "digest": rollout.digest,
        "tags": list(rollout.tags),
        "generation": rollout.generation,
        "pushed_at": format_timestamp(rollout.pushed_at),
        "created_at": format_timestamp(rollout.created_at),
        "updated_at": format_timestamp(rollout.updated_at),
        "generation_started_at": format_timestamp(rollout.generation_started_at),
        "target": _target_record(rollout.target),
        "regions": [_region_record(r) for r in rollout.regions],
        "deployable": rollout.deployable,
        "image_size_bytes": rollout.image_size_bytes,
        "ignored_reason": rollout.ignored_reason,
        "superseded_by": rollout.superseded_by,
        "outbox": [event_to_record(e) for e in rollout.outbox],
        "confirmed_at": _ts(rollout.confirmed_at),
        "pending_tags": list(rollout.pending_tags),
        "tags_seen": list(rollout.tags_seen),
        "platform_digest": rollout.platform_digest,
        "step_failures": rollout.step_failures,
        "step_error": rollout.step_error,
        "retry_after": _ts(rollout.retry_after),
        "deleted_at": _ts(rollout.deleted_at),
        "builds": [build_to_document(b) for b in rollout.builds],
        "gates": [_gate(g) for g in rollout.gates],
        "history": [history_to_document(e) for e in rollout.history],
        "rolled_back_at": _ts(rollout.rolled_back_at),
        "rollback_reason": rollout.rollback_reason,
        # Derived, stored so a store can filter on it; ignored when reading.
        "state": rollout.state.value,
    }


def rollout_from_record(record: dict[str, Any]) -> Rollout:
    """Inverse of `rollout_to_record`; ValueError when the record is not one."""
    version = record.get("record_version")
    if version != RECORD_VERSION:
        raise ValueError(f"unsupported rollout record version {version!r}")
    try:
        return Rollout(
            id=record["id"],
            registry=record["registry"],
            repository=record["repository"],
            digest=record["digest"],
            tags=tuple(record["tags"]),
            generation=record["generation"],
            pushed_at=parse_timestamp(record["pushed_at"]),
            created_at=parse_timestamp(record["created_at"]),
            updated_at=parse_timestamp(record["updated_at"]),
            generation_started_at=parse_timestamp(record["generation_started_at"]),
            target=_target_from(record["target"]),
            regions=tuple(_region_from(r) for r in record["regions"]),
            deployable=record["deployable"],
            image_size_bytes=record["image_size_bytes"],
            ignored_reason=record["ignored_reason"],
            superseded_by=record["superseded_by"],
            outbox=tuple(event_from_record(e) for e in record["outbox"]),
            confirmed_at=_parse_ts(record.get("confirmed_at")),
            pending_tags=tuple(record.get("pending_tags", ())),
            tags_seen=tuple(record.get("tags_seen", ())),
            platform_digest=record.get("platform_digest"),
            step_failures=int(record.get("step_failures", 0)),
            step_error=record.get("step_error"),
            retry_after=_parse_ts(record.get("retry_after")),
            deleted_at=_parse_ts(record.get("deleted_at")),
            builds=tuple(_build_from(b) for b in record.get("builds", ())),
            gates=tuple(_gate_from(g) for g in record.get("gates", ())),
            history=tuple(_history_from(e) for e in record.get("history", ())),
            rolled_back_at=_parse_ts(record.get("rolled_back_at")),
            rollback_reason=record.get("rollback_reason"),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed rollout record: {error!r}") from error


# --- a push notice waiting in the inbox ------------------------------------------------


def notice_to_record(notice: PushNotice) -> dict[str, Any]:
    """A push notice as the inbox keeps it until it is recorded."""
    return {
        "registry": notice.registry,
        "repository": notice.repository,
        "digest": notice.digest,
        "source": notice.source.value,
        "tag": notice.tag,
        "media_type": notice.media_type,
        "size": notice.size,
        "pushed_at": _ts(notice.pushed_at),
        "region_hint": notice.region_hint,
        "event_id": notice.event_id,
        "build": build_to_document(notice.build) if notice.build is not None else None,
    }


def notice_from_record(record: dict[str, Any]) -> PushNotice:
    build = record.get("build")
    return PushNotice(
        registry=record["registry"],
        repository=record["repository"],
        digest=record["digest"],
        source=NoticeSource(record["source"]),
        tag=record.get("tag"),
        media_type=record.get("media_type"),
        size=record.get("size"),
        pushed_at=_parse_ts(record.get("pushed_at")),
        region_hint=record.get("region_hint"),
        event_id=record.get("event_id"),
        build=_build_from(build) if isinstance(build, dict) else None,
    )


def sample_to_record(sample: ReplicationSample) -> dict[str, Any]:
    """A replication sample as the statistics entity keeps it."""
    return {
        "rollout": sample.rollout_id,
        "generation": sample.generation,
        "size": sample.image_size_bytes,
        "latency_s": round(sample.latency_s, 3),
        "at": _ts(sample.replicated_at),
    }


def sample_from_record(record: dict[str, Any]) -> ReplicationSample:
    size = record.get("size")
    return ReplicationSample(
        rollout_id=str(record["rollout"]),
        generation=int(record["generation"]),
        image_size_bytes=int(size) if size is not None else None,
        latency_s=float(record["latency_s"]),
        replicated_at=parse_timestamp(str(record["at"])),
    )


def replication_model_to_document(model: ReplicationModel) -> dict[str, Any]:
    """One region of `GET /api/stats`: its fitted pace and its recent samples, oldest first."""

    def rounded(value: float | None) -> float | None:
        return round(value, 3) if value is not None else None

    return {
        "region": model.region,
        "samples": len(model.samples),
        "base_latency_s": rounded(model.base_latency_s),
        "throughput_bytes_per_s": rounded(model.throughput_bytes_per_s),
        "typical_latency_s": rounded(model.typical_latency_s),
        "latency_p50_s": rounded(model.latency_percentile(0.5)),
        "latency_p95_s": rounded(model.latency_percentile(0.95)),
        "recent": [
            {
                "rollout_id": s.rollout_id,
                "generation": s.generation,
                "image_size_bytes": s.image_size_bytes,
                "latency_s": round(s.latency_s, 3),
                "replicated_at": _ts(s.replicated_at),
            }
            for s in model.samples
        ],
    }
