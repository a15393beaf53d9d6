"""GEOROLLOUT_TARGETS: the progressive rule keys (regions, waves, soak_seconds, verify,
traffic_steps, step_seconds), the older per-region settings form, and every invalid form
reported with the rule and the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import TargetRegionOverride, TargetRuleConfig, TargetVerifyConfig, load_config
from shared.domain.targets import Delivery, VerifyPolicy
from shared.errors import ConfigurationError
from shared.service.runtime import target_rules

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
REGIONS = ("eastus", "westus", "northeurope")


def workspace_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{name}"
    )


def environ(rules: list[Any]) -> dict[str, str]:
    """An Azure-shaped configuration with three regions and these target rules."""
    values = {
        "GEOROLLOUT_TABLE_ENDPOINT": "https://stgeorollout.table.core.windows.net",
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER": "contoso.azurecr.io",
        "GEOROLLOUT_REGIONS": ",".join(REGIONS),
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT": "https://evt.eastus-1.eventgrid.azure.net/api/events",
        "GEOROLLOUT_INSTANCE_NAME": "test1",
        "GEOROLLOUT_TARGETS": json.dumps(rules),
    }
    for region in REGIONS:
        values[f"GEOROLLOUT_REGION_{region.upper()}_WORKSPACE_ID"] = workspace_id(f"ws-{region}")
    return values


def rules_of(*rules: dict[str, Any]) -> tuple[TargetRuleConfig, ...]:
    return load_config(environ(list(rules))).targets


def rule_of(rule: dict[str, Any]) -> TargetRuleConfig:
    [parsed] = rules_of(rule)
    return parsed


def problem_of(*rules: Any) -> str:
    """The one problem the rules give (the loader reports every problem at once)."""
    with pytest.raises(ConfigurationError) as raised:
        load_config(environ(list(rules)))
    [problem] = raised.value.problems
    assert problem.startswith("GEOROLLOUT_TARGETS: ")
    return problem


# --- valid rules ------------------------------------------------------------------------


def test_a_progressive_rule_parses_into_every_field() -> None:
    rule = rule_of(
        {
            "repository": "models/*",
            "tag": "v*",
            "regions": ["northeurope", "westus"],
            "waves": [["westus"], ["northeurope"]],
            "soak_seconds": 600,
            "verify": {
                "smoke_request": {"input": "ping"},
                "interval_seconds": 15,
                "max_failures": 3,
            },
            "traffic_steps": [10, 50, 100],
            "step_seconds": 120.5,
            "approval": "before_each_wave",
        }
    )
    # The primary always, first; then the rule's regions in configured order.
    assert rule.regions == ("eastus", "westus", "northeurope")
    assert rule.waves == (("westus",), ("northeurope",))
    assert rule.soak_seconds == 600.0 and isinstance(rule.soak_seconds, float)
    assert rule.verify == TargetVerifyConfig(
        smoke_request='{"input":"ping"}', interval_seconds=15.0, max_failures=3
    )
    assert rule.traffic_steps == (10, 50, 100)
    assert rule.step_seconds == 120.5
    assert rule.approval == "before_each_wave"
    assert dict(rule.region_overrides) == {}


def test_a_rule_without_progressive_keys_gets_the_plain_defaults() -> None:
    rule = rule_of({"repository": "*"})
    assert rule.regions is None
    assert rule.waves == ()
    assert (rule.soak_seconds, rule.step_seconds) == (0.0, 0.0)
    assert rule.verify == TargetVerifyConfig(
        smoke_request=None, interval_seconds=30.0, max_failures=1
    )
    assert rule.traffic_steps == (100,)
    [domain] = target_rules(load_config(environ([{"repository": "*"}])))
    assert domain.delivery == Delivery()


def test_a_verify_without_a_smoke_request_uses_the_regions_own() -> None:
    rule = rule_of({"verify": {"max_failures": 0}})
    assert rule.verify == TargetVerifyConfig(
        smoke_request=None, interval_seconds=30.0, max_failures=0
    )


def test_a_rules_regions_list_may_leave_out_the_primary_and_secondaries() -> None:
    assert rule_of({"regions": ["westus"]}).regions == ("eastus", "westus")
    assert rule_of({"regions": ["eastus"]}).regions == ("eastus",)
    # Waves are checked against the rule's own secondaries.
    rule = rule_of({"regions": ["northeurope"], "waves": [["northeurope"]]})
    assert (rule.regions, rule.waves) == (("eastus", "northeurope"), (("northeurope",),))


def test_the_loaded_rule_becomes_the_domains_delivery() -> None:
    rules = [
        {
            "repository": "models/*",
            "regions": ["westus", "northeurope"],
            "waves": [["northeurope"], ["westus"]],
            "soak_seconds": 60,
            "verify": {"smoke_request": [1], "interval_seconds": 5, "max_failures": 2},
            "traffic_steps": [25, 100],
            "step_seconds": 30,
        }
    ]
    [domain] = target_rules(load_config(environ(rules)))
    assert domain.delivery == Delivery(
        regions=("eastus", "westus", "northeurope"),
        waves=(("northeurope",), ("westus",)),
        soak_s=60.0,
        verify=VerifyPolicy(smoke_request="[1]", interval_s=5.0, max_failures=2),
        traffic_steps=(25, 100),
        step_s=30.0,
    )
    target = domain.target_for("models/llm")
    assert target.wave_of("northeurope", False) == 1 and target.wave_of("westus", False) == 2
    assert target.verify_request("westus") == "[1]"


# --- per-region settings: the older form and the new key --------------------------------


def test_regions_as_an_object_is_still_read_as_per_region_settings() -> None:
    rule = rule_of({"regions": {"westus": {"instance_count": 4, "smoke_request": {"w": 1}}}})
    assert rule.regions is None  # every region still deploys
    assert rule.region_overrides["westus"] == TargetRegionOverride(
        instance_type=None, instance_count=4, smoke_request='{"w":1}'
    )
    [domain] = target_rules(load_config(environ([{"regions": {"westus": {"instance_count": 4}}}])))
    assert domain.target_for("m").settings_for("westus").instance_count == 4
    assert domain.delivery.regions is None


def test_region_settings_gives_overrides_beside_a_regions_list() -> None:
    rule = rule_of(
        {
            "regions": ["westus"],
            "region_settings": {"westus": {"instance_type": "Standard_NC6s_v3"}},
        }
    )
    assert rule.regions == ("eastus", "westus")
    assert rule.region_overrides["westus"].instance_type == "Standard_NC6s_v3"


# --- invalid rules: every message names the rule and the key ------------------------------


@pytest.mark.parametrize(
    ("rule", "where", "fragment"),
    [
        # waves
        (
            {"waves": [["eastus"], ["westus", "northeurope"]]},
            "rule 0.waves",
            "eastus is the primary",
        ),
        ({"waves": [["westus"]]}, "rule 0.waves", "northeurope in no wave"),
        (
            {"waves": [["westus"], ["westus", "northeurope"]]},
            "rule 0.waves",
            "westus in more than one place",
        ),
        (
            {"waves": [["westus"], ["northeurope", "southindia"]]},
            "rule 0.waves",
            "southindia not among the rule's secondary regions",
        ),
        (
            {"regions": ["westus"], "waves": [["westus"], ["northeurope"]]},
            "rule 0.waves",
            "northeurope not among the rule's secondary regions (westus)",
        ),
        ({"waves": []}, "rule 0.waves", "must be a list of non-empty lists"),
        ({"waves": [["westus"], []]}, "rule 0.waves", "must be a list of non-empty lists"),
        ({"waves": ["westus", "northeurope"]}, "rule 0.waves", "must be a list of non-empty lists"),
        # regions
        (
            {"regions": ["westus", "southindia"]},
            "rule 0.regions",
            "southindia not in GEOROLLOUT_REGIONS",
        ),
        ({"regions": ["westus", "westus"]}, "rule 0.regions", "names a region twice"),
        ({"regions": []}, "rule 0.regions", "non-empty list of region names"),
        ({"regions": "westus"}, "rule 0.regions", "non-empty list of region names"),
        ({"regions": [1]}, "rule 0.regions", "non-empty list of region names"),
        (
            {"regions": {"westus": {}}, "region_settings": {"westus": {}}},
            "rule 0",
            "give per-region settings in region_settings and make regions a list",
        ),
        ({"region_settings": ["westus"]}, "rule 0.region_settings", "must be an object"),
        (
            {"region_settings": {"southindia": {}}},
            "rule 0.region_settings",
            "'southindia' is not in GEOROLLOUT_REGIONS",
        ),
        (
            {"region_settings": {"westus": {"soak_seconds": 1}}},
            "rule 0.region_settings.westus",
            "unknown key(s) soak_seconds",
        ),
        # traffic_steps
        ({"traffic_steps": [50, 10, 100]}, "rule 0.traffic_steps", "must increase"),
        ({"traffic_steps": [10, 10, 100]}, "rule 0.traffic_steps", "must increase"),
        ({"traffic_steps": [10, 50]}, "rule 0.traffic_steps", "must end at 100"),
        ({"traffic_steps": [0, 100]}, "rule 0.traffic_steps", "0 is not a whole percentage"),
        ({"traffic_steps": [50, 101]}, "rule 0.traffic_steps", "101 is not a whole percentage"),
        ({"traffic_steps": [-5, 100]}, "rule 0.traffic_steps", "-5 is not a whole percentage"),
        ({"traffic_steps": [12.5, 100]}, "rule 0.traffic_steps", "12.5 is not a whole percentage"),
        ({"traffic_steps": [True, 100]}, "rule 0.traffic_steps", "True is not a whole percentage"),
        ({"traffic_steps": ["10", 100]}, "rule 0.traffic_steps", "'10' is not a whole percentage"),
        ({"traffic_steps": []}, "rule 0.traffic_steps", "non-empty list of percentages"),
        ({"traffic_steps": 100}, "rule 0.traffic_steps", "non-empty list of percentages"),
        # soak and step times
        ({"soak_seconds": -1}, "rule 0.soak_seconds", "0 or more, got -1"),
        ({"soak_seconds": "600"}, "rule 0.soak_seconds", "0 or more, got '600'"),
        ({"soak_seconds": True}, "rule 0.soak_seconds", "0 or more, got True"),
        ({"step_seconds": -0.5}, "rule 0.step_seconds", "0 or more, got -0.5"),
        # verify
        ({"verify": {"interval": 5}}, "rule 0.verify", "unknown key(s) interval"),
        ({"verify": []}, "rule 0.verify", "must be an object"),
        ({"verify": {"max_failures": -1}}, "rule 0.verify", "max_failures must be a whole number"),
        (
            {"verify": {"max_failures": True}},
            "rule 0.verify",
            "max_failures must be a whole number",
        ),
        ({"verify": {"max_failures": 1.5}}, "rule 0.verify", "max_failures must be a whole number"),
        (
            {"verify": {"interval_seconds": 0}},
            "rule 0.verify",
            "interval_seconds must be a positive",
        ),
        (
            {"verify": {"interval_seconds": -3}},
            "rule 0.verify",
            "interval_seconds must be a positive",
        ),
        (
            {"verify": {"interval_seconds": False}},
            "rule 0.verify",
            "interval_seconds must be a positive",
        ),
    ],
)
def test_an_invalid_progressive_rule_names_the_rule_and_the_key(
    rule: dict[str, Any], where: str, fragment: str
) -> None:
    problem = problem_of(rule)
    assert f"GEOROLLOUT_TARGETS: {where}" in problem
    assert fragment in problem


def test_problems_name_the_rule_they_are_in() -> None:
    problem = problem_of(
        {"repository": "models/*"},
        {"repository": "legacy/*", "traffic_steps": [10]},
        {"repository": "*", "verify": {"max_failures": -2}},
    )
    assert "rule 0" not in problem
    assert "rule 1.traffic_steps: must end at 100" in problem
    assert "rule 2.verify: max_failures must be a whole number, 0 or more, got -2" in problem


def test_an_unknown_rule_key_lists_the_progressive_keys_as_allowed() -> None:
    problem = problem_of({"soak": 60})
    assert "rule 0: unknown key(s) soak" in problem
    for key in ("regions", "region_settings", "waves", "soak_seconds", "verify"):
        assert key in problem
    assert "traffic_steps" in problem and "step_seconds" in problem
