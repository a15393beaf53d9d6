"""Endpoint and deployment names obey Azure's grammar for any repository; rules match in order."""

from __future__ import annotations

import random
import string

import pytest

from shared.domain.names import (
    azure_name,
    deployment_name,
    endpoint_name,
    is_valid_azure_name,
    validate_endpoint_template,
)
from shared.domain.targets import CATCH_ALL_RULE, DeploymentSettings, TargetRule, match_target

WEIRD = [
    "a",
    "ab",
    "x/y",
    "models/llm",
    "9lives",
    "1/2/3",
    "__init__",
    "a.b.c",
    "a--b",
    "a__b",
    "very/long/" + "segment-" * 20,
    "0" * 300,
    "-",
    "._-",
    "ü",
    "UPPER/Case",
    "ab/" * 80 + "z",
]


def random_repository(rng: random.Random) -> str:
    alphabet = string.ascii_lowercase + string.digits + "._-/"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 255)))


def all_inputs() -> list[str]:
    rng = random.Random(7)
    return WEIRD + [random_repository(rng) for _ in range(500)]


@pytest.mark.parametrize(
    "template", ["{repository}", "ep-{name}", "{name}", "x", "team-{repository}-prod"]
)
def test_endpoint_names_are_always_valid_and_deterministic(template: str) -> None:
    for repository in all_inputs():
        name = endpoint_name(template, repository)
        assert is_valid_azure_name(name), (template, repository, name)
        assert 3 <= len(name) <= 32
        assert name == endpoint_name(template, repository)


def test_readable_names_are_kept_and_long_ones_cut_with_hash() -> None:
    assert endpoint_name("{repository}", "models/llm") == "models-llm"
    assert endpoint_name("{name}", "models/llm") == "llm"
    assert endpoint_name("{repository}", "9lives") == "ep-9lives"
    long_a = endpoint_name("{repository}", "team/" + "x" * 40 + "/a")
    long_b = endpoint_name("{repository}", "team/" + "x" * 40 + "/b")
    assert long_a != long_b
    assert len(long_a) == 32
    assert long_a.startswith("team-xxxx")
    assert azure_name("a") != azure_name("b")
    assert len(azure_name("a")) >= 3


def test_distinct_long_inputs_rarely_collide() -> None:
    names = {endpoint_name("{repository}", r) for r in all_inputs() if len(r) > 40}
    longs = {r for r in all_inputs() if len(r) > 40}
    assert len(names) == len(longs)


def test_template_placeholders_are_checked() -> None:
    validate_endpoint_template("ep-{repository}")
    with pytest.raises(ValueError, match="unknown placeholder"):
        validate_endpoint_template("{registry}")
    with pytest.raises(ValueError):
        TargetRule("*", "*", "{tag}")


def test_deployment_names() -> None:
    digest = "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5"
    assert deployment_name(digest) == "sha256-213bbc182920"
    assert deployment_name(digest, generation=3) == "sha256-213bbc182920-g3"
    for g in range(1, 1000, 37):
        assert is_valid_azure_name(deployment_name(digest, generation=g))


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    gpu = DeploymentSettings(instance_type="Standard_NC6s_v3")
    rules = [
        TargetRule("models/*", "canary-*", "{name}-canary", gpu),
        TargetRule("models/*", "*", "{name}"),
    ]
    canary = match_target(rules, "models/llm", "canary-1")
    assert canary is not None and canary.endpoint == "llm-canary"
    assert canary.settings.instance_type == "Standard_NC6s_v3"
    stable = match_target(rules, "models/llm", "v2")
    assert stable is not None and stable.endpoint == "llm"
    assert match_target(rules, "other/llm", "v2") is None
    by_digest = match_target(rules, "models/llm", None)
    assert by_digest is not None and by_digest.endpoint == "llm"
    assert match_target([TargetRule("models/*", "v*", "{name}")], "models/llm", None) is None


def test_catch_all_rule_names_endpoint_after_repository() -> None:
    target = match_target([CATCH_ALL_RULE], "models/llm", "v1")
    assert target is not None and target.endpoint == "models-llm"
    with pytest.raises(ValueError):
        TargetRule("*", "*", "{repository}", DeploymentSettings(instance_count=0))
