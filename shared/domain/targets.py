"""Target rules: which endpoint and deployment settings a pushed repository and tag roll out to.

The first rule whose repository glob and tag glob match wins; no match means
the rollout is recorded `ignored`.
"""

from __future__ import annotations

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

    def matches(self, repository: str, tag: str | None) -> bool:
        return fnmatchcase(repository, self.repository_glob) and fnmatchcase(
            tag or "", self.tag_glob
        )

    def target_for(self, repository: str) -> Target:
        return Target(
            endpoint=endpoint_name(self.endpoint_template, repository, instance=self.instance),
            settings=self.settings,
            region_overrides=self.region_overrides,
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
