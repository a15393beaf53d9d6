"""Endpoint and deployment names obey Azure's grammar for any repository, carry this
deployment's instance name by default; rules match in order."""

from __future__ import annotations

import hashlib
import random
import string

import pytest

from shared.domain.names import (
    DEFAULT_ENDPOINT_TEMPLATE,
    azure_name,
    bind_instance,
    deployment_name,
    derive_instance_name,
    endpoint_name,
    is_valid_azure_name,
    validate_endpoint_template,
    validate_instance_name,
)
from shared.domain.targets import (
    CATCH_ALL_RULE,
    DeploymentSettings,
    TargetRule,
    catch_all_rule,
    match_target,
)

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


# --- the instance name: endpoint names unique to this georollout deployment ---------------

LOGIN = "contoso.azurecr.io"
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ml/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws-east"
)


def test_the_instance_name_is_a_short_stable_hash_of_registry_and_primary_workspace() -> None:
    instance = derive_instance_name(LOGIN, WORKSPACE)
    assert instance == hashlib.sha256(f"{LOGIN}\n{WORKSPACE}".lower().encode()).hexdigest()[:8]
    assert validate_instance_name(instance) == instance
    # Every process derives the same one; ARM ids and host names compare case-insensitively.
    assert derive_instance_name(LOGIN.upper(), WORKSPACE.upper() + " ") == instance
    assert derive_instance_name("fabrikam.azurecr.io", WORKSPACE) != instance
    assert derive_instance_name(LOGIN, WORKSPACE.replace("ws-east", "ws-west")) != instance


def test_the_default_template_names_the_endpoint_after_repository_and_instance() -> None:
    assert DEFAULT_ENDPOINT_TEMPLATE == "{repository}-{instance}"
    assert endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, "models/llm", instance="1a2b3c4d") == (
        "models-llm-1a2b3c4d"
    )
    assert endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, "9lives", instance="1a2b3c4d") == (
        "ep-9lives-1a2b3c4d"
    )
    assert endpoint_name("{instance}-{name}", "models/llm", instance="7e") == "ep-7e-llm"
    target = match_target([catch_all_rule("1a2b3c4d")], "models/llm", "v1")
    assert target is not None and target.endpoint == "models-llm-1a2b3c4d"


def test_two_deployments_of_georollout_name_the_same_repository_differently() -> None:
    first = derive_instance_name(LOGIN, WORKSPACE)
    second = derive_instance_name("fabrikam.azurecr.io", WORKSPACE)
    for repository in ["models/llm", "team/" + "x" * 40 + "/a", "a"]:
        names = {
            endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, repository, instance=i)
            for i in (first, second)
        }
        assert len(names) == 2, (repository, names)
    # ... while one deployment always derives the same name.
    assert endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, "models/llm", instance=first) == (
        endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, "models/llm", instance=first)
    )


def test_long_names_with_an_instance_are_cut_to_32_with_a_hash() -> None:
    repository = "team/" + "x" * 40 + "/a"
    name = endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, repository, instance="1a2b3c4d")
    assert len(name) == 32 and name.startswith("team-xxxx") and is_valid_azure_name(name)
    # The hash covers the whole filled template, instance included.
    assert name != endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, repository, instance="1a2b3c4e")
    for repository in all_inputs():
        for instance in ("1a2b3c4d", "prod-weu", "z"):
            name = endpoint_name(DEFAULT_ENDPOINT_TEMPLATE, repository, instance=instance)
            assert is_valid_azure_name(name), (repository, instance, name)
            assert 3 <= len(name) <= 32


@pytest.mark.parametrize("instance", ["a", "prod", "prod-weu-2", "0a1b2c3d", "a" * 12])
def test_valid_instance_names(instance: str) -> None:
    assert validate_instance_name(instance) == instance


@pytest.mark.parametrize("instance", ["", "Prod", "-a", "a-", "a_b", "a" * 13, "a b", "ü"])
def test_invalid_instance_names(instance: str) -> None:
    with pytest.raises(ValueError, match="instance name"):
        validate_instance_name(instance)


def test_bind_instance_fills_only_the_instance() -> None:
    assert bind_instance(DEFAULT_ENDPOINT_TEMPLATE, "1a2b3c4d") == "{repository}-1a2b3c4d"
    assert bind_instance("{{x}}-{name}-{instance}", "i1") == "{{x}}-{name}-i1"
    assert bind_instance("{name}", "i1") == "{name}"  # an explicit template keeps working
    with pytest.raises(ValueError, match="instance name"):
        bind_instance(DEFAULT_ENDPOINT_TEMPLATE, "Not-Valid")


def test_the_instance_placeholder_needs_an_instance() -> None:
    validate_endpoint_template("{repository}-{instance}")
    with pytest.raises(ValueError, match="give an instance name"):
        endpoint_name("{repository}-{instance}", "models/llm")
    with pytest.raises(ValueError, match="needs an instance name"):
        TargetRule("*", "*", "{repository}-{instance}")
    with pytest.raises(ValueError, match="instance name"):
        TargetRule("*", "*", "{name}", instance="UPPER")
    with pytest.raises(ValueError, match="takes no format spec"):
        validate_endpoint_template("{instance:>8}")
    with pytest.raises(ValueError, match=r"\{instance\}"):
        validate_endpoint_template("{tag}")
