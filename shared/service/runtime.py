"""The composition root: configuration and adapters, built once per worker process.

Triggers ask for `services()`; tests build a `Services` from their own config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential
from azure.identity.aio import DefaultAzureCredential as AsyncDefaultAzureCredential

from shared.adapters.event_publisher import EventPublisher
from shared.adapters.foundry_deployer import FoundryDeployer
from shared.adapters.replica_probe import ReplicaProbe
from shared.adapters.rollout_repository import RolloutRepository
from shared.adapters.table_store import RolloutStore
from shared.config import Config, TargetRuleConfig, load_config
from shared.domain.rollout import RolloutPolicy
from shared.domain.schedule import next_due_at
from shared.domain.targets import (
    ApprovalMode,
    Delivery,
    DeploymentSettings,
    RegionOverride,
    TargetRule,
    VerifyPolicy,
)
from shared.service.budget import RegistryBudget
from shared.service.follow_ups import FollowUps
from shared.service.replication_stats import ReplicationStats
from shared.service.telemetry import Telemetry

log = logging.getLogger("georollout")


def target_rules(config: Config) -> tuple[TargetRule, ...]:
    """The configured target rules as the domain's rules (first match wins)."""
    return tuple(_rule(rule) for rule in config.targets)


def _rule(rule: TargetRuleConfig) -> TargetRule:
    overrides = tuple(
        (region, RegionOverride(o.instance_type, o.instance_count, o.smoke_request))
        for region, o in rule.region_overrides.items()
    )
    return TargetRule(
        repository_glob=rule.repository_glob,
        tag_glob=rule.tag_glob,
        endpoint_template=rule.endpoint_template,
        settings=DeploymentSettings(rule.instance_type, rule.instance_count, rule.smoke_request),
        region_overrides=overrides,
        approval=ApprovalMode(rule.approval),
        approval_timeout_s=rule.approval_timeout_hours * 3600,
        delivery=Delivery(
            regions=rule.regions,
            waves=rule.waves,
            soak_s=rule.soak_seconds,
            verify=VerifyPolicy(
                smoke_request=rule.verify.smoke_request,
                interval_s=rule.verify.interval_seconds,
                max_failures=rule.verify.max_failures,
            ),
            traffic_steps=rule.traffic_steps,
            step_s=rule.step_seconds,
        ),
    )


def rollout_policy(config: Config) -> RolloutPolicy:
    return RolloutPolicy(
        probe_initial_backoff_s=config.probe.backoff_initial_seconds,
        probe_max_backoff_s=config.probe.backoff_max_seconds,
        replication_timeout_base_s=config.replication.timeout_minutes * 60,
        replication_timeout_per_gb_s=config.replication.timeout_minutes_per_gb * 60,
        give_up_after_s=config.replication.give_up_hours * 3600,
        keep_previous_s=config.keep_previous_minutes * 60,
    )


@dataclass
class Services:
    """Everything a trigger needs; adapters are created lazily and reused across invocations."""

    config: Config
    store: RolloutStore
    probe: ReplicaProbe
    deployer: FoundryDeployer
    publisher: EventPublisher
    rules: tuple[TargetRule, ...]
    policy: RolloutPolicy
    budgets: dict[str, RegistryBudget] = field(default_factory=dict)
    table_ready: bool = False
    # Set in the function app's process (see `services()`): steps run when due, not per tick.
    follow_ups: FollowUps | None = None
    # Metrics and traces (the global OpenTelemetry providers unless a test passes its own).
    telemetry: Telemetry = field(default_factory=Telemetry)
    rollouts: RolloutRepository = field(init=False)
    replication: ReplicationStats = field(init=False)

    def __post_init__(self) -> None:
        self.rollouts = RolloutRepository(self.store, policy=self.policy, poll=self.deploy_poll)
        self.replication = ReplicationStats(self.rollouts)

    @property
    def deploy_poll(self) -> timedelta:
        return timedelta(seconds=self.config.deploy_poll_seconds)

    def budget(self, registry: str) -> RegistryBudget:
        """This process's share of `registry`'s request budget (its login server), which
        every instance draws from through one ledger in the table."""
        budget = self.budgets.get(registry)
        if budget is None:
            budget = RegistryBudget(
                self.config.probe.budget_per_minute, self.store.budget_ledger(registry)
            )
            self.budgets[registry] = budget
        return budget

    async def ensure_table(self) -> None:
        if not self.table_ready:
            await self.store.ensure_table()
            self.table_ready = True

    def follow_up_when_due(self) -> FollowUps:
        """Turn follow-ups on: every reconcile then sets a wake-up for the rollout's next step."""
        if self.follow_ups is None:
            self.follow_ups = FollowUps(
                lambda rollout, now, probes_from: next_due_at(
                    rollout, now, self.policy, self.deploy_poll, probes_from=probes_from
                ),
                lambda: datetime.now(UTC),
                concurrency=self.config.probe.concurrency,
            )
        return self.follow_ups

    async def close(self) -> None:
        if self.follow_ups is not None:
            await self.follow_ups.close()
        await self.probe.close()
        await self.publisher.close()
        await self.store.close()
        self.deployer.close()


def build_services(config: Config, *, credential: TokenCredential | None = None) -> Services:
    """Adapters for `config`: the same code for Azurite and local stand-ins as for Azure.

    `credential` (default: DefaultAzureCredential) signs the Foundry deployer's ARM calls;
    in-process tests pass a fixed-token one, as no local Entra ID exists.
    """
    ca = str(config.ca_bundle) if config.ca_bundle else None
    async_credential = AsyncDefaultAzureCredential()
    if config.table.connection_string:
        store = RolloutStore.from_connection_string(
            config.table.connection_string, config.table.table_name, ca_bundle=ca
        )
    else:
        assert config.table.endpoint is not None  # load_config guarantees one of the two
        store = RolloutStore.from_endpoint(
            config.table.endpoint,
            async_credential,
            config.table.table_name,
            ca_bundle=ca,
        )
    endpoints: Mapping[str, str] = {r.name: r.registry_endpoint for r in config.regions}
    probe = ReplicaProbe(
        endpoints,
        credential=async_credential,
        ca_bundle=ca,
        max_connections=config.probe.concurrency,
    )
    deployer = FoundryDeployer(
        {r.name: r.workspace for r in config.regions},
        credential=credential or DefaultAzureCredential(),
        arm_endpoint=config.arm_endpoint,
        ca_bundle=ca,
        endpoint_identities={
            r.name: r.endpoint_identity_id for r in config.regions if r.endpoint_identity_id
        },
        smoke_timeout_s=config.smoke_timeout_seconds,
    )
    publisher = EventPublisher(
        config.events.topic_endpoint,
        key=config.events.topic_key,
        credential=None if config.events.topic_key else async_credential,
        ca_bundle=ca,
    )
    return Services(
        config=config,
        store=store,
        probe=probe,
        deployer=deployer,
        publisher=publisher,
        rules=target_rules(config),
        policy=rollout_policy(config),
    )


_services: Services | None = None
_lock = asyncio.Lock()


async def services() -> Services:
    """The process's services, built on first use; ConfigurationError if the settings are wrong."""
    global _services
    if _services is None:
        async with _lock:
            if _services is None:
                _services = build_services(load_config())
                _services.follow_up_when_due()
                log.info(
                    "georollout configured: registry %s, regions %s",
                    _services.config.registry_login_server,
                    ", ".join(_services.config.region_names),
                )
    await _services.ensure_table()
    return _services
