"""Target rules: which endpoint and deployment settings a pushed repository and tag roll out to.

The first rule whose repository glob and tag glob match wins; no match means
the rollout is recorded `ignored`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from shared.domain.names import (
    DEFAULT_ENDPOINT_TEMPLATE,
    endpoint_name,
    uses_instance,
    validate_endpoint_template,
    validate_instance_name,
)

DEFAULT_SMOKE_REQUEST = "{}"
DEFAULT_APPROVAL_TIMEOUT_S = 24 * 3600.0


class ApprovalMode(enum.StrEnum):
    """When a target rule makes a rollout wait for `POST .../approve`."""

    NONE = "none"
    BEFORE_SECONDARIES = "before_secondaries"
    BEFORE_EACH_WAVE = "before_each_wave"


DEFAULT_VERIFY_INTERVAL_S = 30.0
DEFAULT_MAX_FAILURES = 1


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """How a deployment taking traffic is watched (during a traffic step, and while its wave
    soaks): checks every `interval_s`; more than `max_failures` failed checks roll the wave
    back. `smoke_request` None: the region's own smoke request (none: ARM's state only)."""

    smoke_request: str | None = None
    interval_s: float = DEFAULT_VERIFY_INTERVAL_S
    max_failures: int = DEFAULT_MAX_FAILURES

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError("verify.interval_seconds must be positive")
        if self.max_failures < 0:
            raise ValueError("verify.max_failures must be 0 or more")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A rule's progressive delivery: which regions, in which waves, how each wave is watched
    and how traffic moves. The defaults are the plain rollout: every configured region, the
    primary then one wave of every secondary, no soak, traffic moved in one step."""

    # The regions deployed to (None: every configured region); the primary is always one.
    regions: tuple[str, ...] | None = None
    # Ordered waves of secondaries (empty: one wave of every secondary).
    waves: tuple[tuple[str, ...], ...] = ()
    soak_s: float = 0.0
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    traffic_steps: tuple[int, ...] = (100,)
    step_s: float = 0.0

    def __post_init__(self) -> None:
        if self.soak_s < 0 or self.step_s < 0:
            raise ValueError("soak_seconds and step_seconds must be 0 or more")
        steps = self.traffic_steps
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            raise ValueError("traffic_steps must be percentages from 1 to 100 ending at 100")
        if any(a >= b for a, b in itertools.pairwise(steps)):
            raise ValueError("traffic_steps must increase")
        named = [region for wave in self.waves for region in wave]
        if any(not wave for wave in self.waves) or len(set(named)) != len(named):
            raise ValueError("waves must be non-empty and name each region once")

    def select(self, configured: Sequence[str]) -> tuple[str, ...]:
        """The rule's regions in configured order; the primary (the first configured) always."""
        if self.regions is None:
            return tuple(configured)
        return tuple(name for i, name in enumerate(configured) if i == 0 or name in self.regions)

    def wave_of(self, region: str, primary: bool) -> int:
        """0 for the primary; 1, 2... for the waves in order (1 without waves)."""
        if primary:
            return 0
        for number, wave in enumerate(self.waves, start=1):
            if region in wave:
                return number
        return 1

    def step_after(self, percent: int) -> int:
        """The traffic share the next step gives the new deployment (100 at the end)."""
        return next((s for s in self.traffic_steps if s > percent), 100)


@dataclass(frozen=True, slots=True)
class DeploymentSettings:
    """How a deployment is sized and verified. `smoke_request` is the JSON body sent to
    the scoring route; None skips the smoke test (provisioning success is then enough)."""

    instance_type: str = "Standard_DS3_v2"
    instance_count: int = 1
    smoke_request: str | None = DEFAULT_SMOKE_REQUEST


@dataclass(frozen=True, slots=True)
class RegionOverride:
    """Per-region changes to the rule's settings; None keeps the rule's value."""

    instance_type: str | None = None
    instance_count: int | None = None
    smoke_request: str | None = None

    def apply(self, settings: DeploymentSettings) -> DeploymentSettings:
        return replace(
            settings,
            instance_type=self.instance_type or settings.instance_type,
            instance_count=self.instance_count or settings.instance_count,
            smoke_request=(
                self.smoke_request if self.smoke_request is not None else settings.smoke_request
            ),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """The resolved target of one rollout: endpoint name plus settings (per region)."""

    endpoint: str
    settings: DeploymentSettings = field(default_factory=DeploymentSettings)
    region_overrides: tuple[tuple[str, RegionOverride], ...] = ()
    approval: ApprovalMode = ApprovalMode.NONE
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    delivery: Delivery = field(default_factory=Delivery)

    def wave_of(self, region: str, primary: bool) -> int:
        """The wave `region` deploys in: 0 for the primary, then the rule's waves in order."""
        return self.delivery.wave_of(region, primary)

    def verify_request(self, region: str) -> str | None:
        """The smoke request a verification sends in `region` (None: ARM's state only)."""
        verify = self.delivery.verify.smoke_request
        return verify if verify is not None else self.settings_for(region).smoke_request

    def gated(self, wave: int) -> bool:
        """Whether wave `wave` waits for an operator's approval."""
        if wave < 1:
            return False
        if self.approval is ApprovalMode.BEFORE_EACH_WAVE:
            return True
        return self.approval is ApprovalMode.BEFORE_SECONDARIES and wave == 1

    def settings_for(self, region: str) -> DeploymentSettings:
        """The settings for `region`, with its override applied."""
        for name, override in self.region_overrides:
            if name == region:
                return override.apply(self.settings)
        return self.settings


@dataclass(frozen=True, slots=True)
class TargetRule:
    """repository glob + tag glob -> endpoint template and settings. Globs are fnmatch-style,
    case-sensitive; `*` also matches `/`. A push by digest only (no tag) matches tag glob `*`.

    `instance` fills the template's `{instance}` (required when the template uses it); the
    configuration usually fills it in the template itself before the rule is built."""

    repository_glob: str
    tag_glob: str
    endpoint_template: str
    settings: DeploymentSettings = field(default_factory=DeploymentSettings)
    region_overrides: tuple[tuple[str, RegionOverride], ...] = ()
    instance: str | None = None
    approval: ApprovalMode = ApprovalMode.NONE
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    delivery: Delivery = field(default_factory=Delivery)

    def __post_init__(self) -> None:
        validate_endpoint_template(self.endpoint_template)
        if self.instance is not None:
            validate_instance_name(self.instance)
        elif uses_instance(self.endpoint_template):
            raise ValueError(
                f"endpoint template {self.endpoint_template!r} uses {{instance}}: "
                "the rule needs an instance name"
            )
        if self.settings.instance_count < 1:
            raise ValueError("instance_count must be at least 1")
        if not self.approval_timeout_s > 0:
            raise ValueError("approval_timeout_hours must be positive")

    def matches(self, repository: str, tag: str | None) -> bool:
        return fnmatchcase(repository, self.repository_glob) and fnmatchcase(
            tag or "", self.tag_glob
        )

    def target_for(self, repository: str) -> Target:
        return Target(
            endpoint=endpoint_name(self.endpoint_template, repository, instance=self.instance),
            settings=self.settings,
            region_overrides=self.region_overrides,
            approval=self.approval,
            approval_timeout_s=self.approval_timeout_s,
            delivery=self.delivery,
        )


# Names endpoints from the repository alone: fine where names need not be unique across
# Azure (tests, benchmarks). The configured default is `catch_all_rule(instance)`.
CATCH_ALL_RULE = TargetRule(repository_glob="*", tag_glob="*", endpoint_template="{repository}")


def catch_all_rule(instance: str) -> TargetRule:
    """The default rule: every push, endpoint `{repository}-{instance}` (unique to this
    georollout deployment, see shared.domain.names)."""
    return TargetRule(
        repository_glob="*",
        tag_glob="*",
        endpoint_template=DEFAULT_ENDPOINT_TEMPLATE,
        instance=instance,
    )


def match_target(rules: Sequence[TargetRule], repository: str, tag: str | None) -> Target | None:
    """The target of the first rule matching `repository` and `tag`, or None."""
    for rule in rules:
        if rule.matches(repository, tag):
            return rule.target_for(repository)
    return None
