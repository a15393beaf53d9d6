"""The configuration: catalogue, sample settings file, defaults and every-problem-at-once errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from devenv.paths import REPO_ROOT
from devenv.tls import TlsFiles
from shared.config import (
    SETTINGS,
    Config,
    load_config,
    region_setting_name,
    region_token,
    setting_names,
)
from shared.domain.names import endpoint_name
from shared.errors import ConfigurationError

SAMPLE = REPO_ROOT / "local.settings.sample.json"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def workspace_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{name}"
    )


def azure_environ(**changes: str) -> dict[str, str]:
    """A minimal Azure-shaped configuration; `changes` add or override settings."""
    environ = {
        "GEOROLLOUT_TABLE_ENDPOINT": "https://stgeorollout.table.core.windows.net",
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER": "contoso.azurecr.io",
        "GEOROLLOUT_REGIONS": "eastus,westeurope",
        "GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID": workspace_id("ws-east"),
        "GEOROLLOUT_REGION_WESTEUROPE_WORKSPACE_ID": workspace_id("ws-weu"),
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT": "https://evt.eastus-1.eventgrid.azure.net/api/events",
    }
    environ.update(changes)
    return environ


def instance_of(login_server: str, primary_workspace_id: str) -> str:
    """The documented derivation, spelled out: 8 hex digits of SHA-256 of both, lower-cased."""
    identity = f"{login_server}\n{primary_workspace_id}".lower().encode()
    return hashlib.sha256(identity).hexdigest()[:8]


def problems_of(environ: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigurationError) as raised:
        load_config(environ)
    return raised.value.problems


# --- the catalogue --------------------------------------------------------------------


def test_catalogue_names_are_unique_and_prefixed() -> None:
    names = [spec.name for spec in SETTINGS]
    assert len(names) == len(set(names))
    assert all(name.startswith("GEOROLLOUT_") for name in names)
    per_region = {spec.name for spec in SETTINGS if spec.per_region}
    assert per_region == {
        "GEOROLLOUT_REGION_{REGION}_REGISTRY_ENDPOINT",
        "GEOROLLOUT_REGION_{REGION}_WORKSPACE_ID",
        "GEOROLLOUT_REGION_{REGION}_ENDPOINT_IDENTITY_ID",
    }


def test_catalogue_flags_secrets_and_local_only_settings() -> None:
    secret = {spec.name for spec in SETTINGS if spec.secret}
    local_only = {spec.name for spec in SETTINGS if spec.local_only}
    assert secret == {
        "GEOROLLOUT_TABLE_CONNECTION_STRING",
        "GEOROLLOUT_EVENTS_TOPIC_KEY",
        "GEOROLLOUT_ACR_WEBHOOK_TOKEN",
        "GEOROLLOUT_BUILD_WEBHOOK_SECRETS",
    }
    assert local_only == {"GEOROLLOUT_TABLE_CONNECTION_STRING", "GEOROLLOUT_EVENTS_TOPIC_KEY"}
    # A required setting with a default would be a contradiction in the catalogue.
    assert not [spec.name for spec in SETTINGS if spec.required and spec.default is not None]


def test_setting_names_expand_regions_in_order() -> None:
    names = setting_names(["eastus", "south-africa north"])
    assert "GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID" in names
    assert "GEOROLLOUT_REGION_SOUTH_AFRICA_NORTH_WORKSPACE_ID" in names
    assert names.index("GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID") < names.index(
        "GEOROLLOUT_REGION_SOUTH_AFRICA_NORTH_WORKSPACE_ID"
    )
    assert not [name for name in names if "{REGION}" in name]
    assert region_token("westus3") == "WESTUS3"
    assert region_setting_name("GEOROLLOUT_REGION_{REGION}_X", "a.b") == "GEOROLLOUT_REGION_A_B_X"


# --- the sample settings file ---------------------------------------------------------


def sample() -> dict[str, dict[str, str]]:
    document: dict[str, dict[str, str]] = json.loads(SAMPLE.read_text())
    return document


def test_sample_lists_exactly_the_catalogue() -> None:
    document = sample()
    values = document["Values"]
    regions = values["GEOROLLOUT_REGIONS"].split(",")
    assert regions == ["eastus", "westus", "westeurope"]
    product = [name for name in values if name.startswith("GEOROLLOUT_")]
    assert product == setting_names(regions)
    assert set(document["Docs"]) == set(values)
    assert all(document["Docs"][name].strip() for name in values)
    assert document["IsEncrypted"] is False  # type: ignore[comparison-overlap]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"


def test_sample_loads_and_matches_the_local_environment(tls_files: TlsFiles) -> None:
    values = dict(sample()["Values"])
    assert values["GEOROLLOUT_CA_BUNDLE"] == ".georollout/tls/ca.pem"
    # The sample's CA path is relative to the repository; point it at this session's CA.
    values["GEOROLLOUT_CA_BUNDLE"] = str(tls_files.ca_pem)
    config = load_config(values)
    assert config.registry_login_server == "127.0.0.1:5001"
    assert config.region_names == ("eastus", "westus", "westeurope")
    assert config.primary_region.name == "eastus" and config.primary_region.primary
    assert [r.registry_endpoint for r in config.regions] == [
        "https://127.0.0.1:5001",
        "https://127.0.0.1:5002",
        "https://127.0.0.1:5003",
    ]
    assert config.region("westus").workspace.name == "ws-westus"
    assert config.region("westus").workspace.resource_group == "georollout-local"
    assert config.table.connection_string and config.table.endpoint is None
    assert config.events.topic_key == "local-topic-key"
    assert config.arm_endpoint == "https://127.0.0.1:8443/"
    assert config.acr_webhook_token is None  # "" is unset: make up leaves the token off
    assert config.unknown_settings == ()
    # The value README quotes for `make up` (registry 127.0.0.1:5001, primary ws-eastus).
    assert config.instance_name == "07d386ab"
    assert config.instance_name == instance_of(
        "127.0.0.1:5001", config.primary_region.workspace.resource_id
    )


# --- defaults and parsing --------------------------------------------------------------


def test_defaults_for_an_azure_configuration() -> None:
    config = load_config(azure_environ())
    assert isinstance(config, Config)
    assert config.table.endpoint == "https://stgeorollout.table.core.windows.net"
    assert config.table.connection_string is None
    assert config.table.table_name == "rollouts"
    # Replica endpoints are derived from an *.azurecr.io login server.
    assert config.region("eastus").registry_endpoint == "https://contoso.eastus.geo.azurecr.io"
    assert config.region("westeurope").registry_endpoint == (
        "https://contoso.westeurope.geo.azurecr.io"
    )
    assert config.arm_endpoint == "https://management.azure.com/"
    assert config.ca_bundle is None
    assert config.events.topic_key is None
    assert config.probe.schedule == "*/30 * * * * *"
    assert (config.probe.budget_per_minute, config.probe.concurrency) == (600, 16)
    assert (config.probe.backoff_initial_seconds, config.probe.backoff_max_seconds) == (15, 300)
    assert config.deploy_poll_seconds == 10
    assert config.endpoint_auth_mode == "key"
    [rule] = config.targets
    instance = instance_of("contoso.azurecr.io", workspace_id("ws-east"))
    assert config.instance_name == instance
    # The default rule names endpoints after the repository and this deployment.
    assert (rule.repository_glob, rule.tag_glob, rule.endpoint_template) == (
        "*",
        "*",
        "{repository}-" + instance,
    )
    assert (rule.instance_type, rule.instance_count) == ("Standard_DS3_v2", 1)
    assert json.loads(rule.smoke_request) == {"input": "ping"}


def test_workspace_id_is_parsed() -> None:
    workspace = load_config(azure_environ()).region("eastus").workspace
    assert workspace.subscription_id == SUBSCRIPTION
    assert workspace.resource_group == "rg-ml"
    assert workspace.name == "ws-east"
    assert workspace.resource_id == workspace_id("ws-east")


def test_target_rules_with_region_overrides() -> None:
    targets = [
        {
            "repository": "models/*",
            "tag": "v*",
            "endpoint": "llm-{name}",
            "instance_count": 3,
            "regions": {"westeurope": {"instance_type": "Standard_NC6s_v3", "smoke_request": [1]}},
        },
        {"repository": "*"},
    ]
    config = load_config(
        azure_environ(
            GEOROLLOUT_TARGETS=json.dumps(targets),
            GEOROLLOUT_INSTANCE_TYPE="Standard_F4s_v2",
            GEOROLLOUT_SMOKE_REQUEST='{"data": [1, 2]}',
        )
    )
    first, second = config.targets
    assert first.endpoint_template == "llm-{name}" and first.instance_count == 3
    assert first.instance_type == "Standard_F4s_v2"  # the global default fills the gap
    override = first.region_overrides["westeurope"]
    assert override.instance_type == "Standard_NC6s_v3" and override.instance_count is None
    assert json.loads(override.smoke_request or "null") == [1]
    # A rule without "endpoint" takes the default template, instance filled in.
    instance = config.instance_name
    assert second.endpoint_template == "{repository}-" + instance and second.tag_glob == "*"
    assert json.loads(second.smoke_request) == {"data": [1, 2]}


def test_connection_string_and_ca_bundle(tls_files: TlsFiles) -> None:
    config = load_config(
        azure_environ(
            GEOROLLOUT_TABLE_ENDPOINT="",
            GEOROLLOUT_TABLE_CONNECTION_STRING="UseDevelopmentStorage=true",
            GEOROLLOUT_CA_BUNDLE=str(tls_files.ca_pem),
        )
    )
    assert config.table.connection_string == "UseDevelopmentStorage=true"
    assert config.ca_bundle == Path(tls_files.ca_pem)


def test_unknown_georollout_settings_are_reported_not_fatal() -> None:
    config = load_config(azure_environ(GEOROLLOUT_REGION_WESTUS_WORKSPACE_ID=workspace_id("x-1")))
    assert config.unknown_settings == ("GEOROLLOUT_REGION_WESTUS_WORKSPACE_ID",)


# --- every problem at once ---------------------------------------------------------------


def test_empty_environment_reports_every_required_setting() -> None:
    problems = problems_of({})
    named = {line.split(":", 1)[0] for line in problems}
    assert named == {
        "GEOROLLOUT_TABLE_ENDPOINT",
        "GEOROLLOUT_REGISTRY_LOGIN_SERVER",
        "GEOROLLOUT_REGIONS",
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT",
    }


def test_many_problems_are_reported_together(tmp_path: Path) -> None:
    environ = azure_environ(
        GEOROLLOUT_TABLE_CONNECTION_STRING="UseDevelopmentStorage=true",  # and the endpoint
        GEOROLLOUT_TABLE_NAME="no-dashes",
        GEOROLLOUT_REGIONS="eastus,westeurope,eastus,West US",
        GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID="/subscriptions/x/resourceGroups/rg",
        GEOROLLOUT_ARM_ENDPOINT="http://management.azure.com/",
        GEOROLLOUT_CA_BUNDLE=str(tmp_path / "missing.pem"),
        GEOROLLOUT_PROBE_SCHEDULE="*/5 * * * *",
        GEOROLLOUT_PROBE_BUDGET_PER_MINUTE="0",
        GEOROLLOUT_PROBE_CONCURRENCY="many",
        GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS="60",
        GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS="30",
        GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES="-1",
        GEOROLLOUT_SMOKE_REQUEST="{not json",
        GEOROLLOUT_ENDPOINT_AUTH_MODE="password",
        GEOROLLOUT_EVENTS_TOPIC_ENDPOINT="ftp://x",
    )
    problems = problems_of(environ)
    named = [line.split(":", 1)[0] for line in problems]
    assert named == [
        "GEOROLLOUT_TABLE_CONNECTION_STRING",
        "GEOROLLOUT_TABLE_NAME",
        "GEOROLLOUT_REGIONS",
        "GEOROLLOUT_ARM_ENDPOINT",
        "GEOROLLOUT_CA_BUNDLE",
        "GEOROLLOUT_EVENTS_TOPIC_ENDPOINT",
        "GEOROLLOUT_PROBE_SCHEDULE",
        "GEOROLLOUT_PROBE_BUDGET_PER_MINUTE",
        "GEOROLLOUT_PROBE_CONCURRENCY",
        "GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS",
        "GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES",
        "GEOROLLOUT_SMOKE_REQUEST",
        "GEOROLLOUT_ENDPOINT_AUTH_MODE",
    ]
    text = "\n".join(problems)
    assert "more than once: eastus" in text and "'West US'" in text
    assert "six fields" in text and "missing.pem" in text


def test_region_problems_name_the_region_setting() -> None:
    environ = azure_environ(
        GEOROLLOUT_REGISTRY_LOGIN_SERVER="127.0.0.1:5001",
        GEOROLLOUT_REGION_EASTUS_REGISTRY_ENDPOINT="https://127.0.0.1:5001",
        GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID=workspace_id("w"),  # too short a name
        GEOROLLOUT_REGION_EASTUS_ENDPOINT_IDENTITY_ID="/subscriptions/x/identity",
        GEOROLLOUT_REGION_WESTEUROPE_WORKSPACE_ID="",
    )
    problems = problems_of(environ)
    by_name = {line.split(":", 1)[0]: line for line in problems}
    assert set(by_name) == {
        "GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID",
        "GEOROLLOUT_REGION_EASTUS_ENDPOINT_IDENTITY_ID",
        # Not *.azurecr.io: no endpoint can be derived for westeurope.
        "GEOROLLOUT_REGION_WESTEUROPE_REGISTRY_ENDPOINT",
        "GEOROLLOUT_REGION_WESTEUROPE_WORKSPACE_ID",
    }
    assert "workspace name 'w'" in by_name["GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID"]
    assert "is required" in by_name["GEOROLLOUT_REGION_WESTEUROPE_WORKSPACE_ID"]


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ("{}", "non-empty JSON list"),
        ("[1]", "rule 0: must be an object"),
        ('[{"repo": "*"}]', "unknown key(s) repo"),
        ('[{"endpoint": "{registry}-x"}]', "uses {registry}"),
        ('[{"instance_count": 0}]', "rule 0.instance_count"),
        ('[{"regions": {"northeurope": {}}}]', "'northeurope' is not in GEOROLLOUT_REGIONS"),
        ('[{"regions": {"eastus": {"endpoint": "x"}}}]', "rule 0.regions.eastus: unknown key(s)"),
    ],
)
def test_bad_target_rules_are_reported(targets: str, fragment: str) -> None:
    [problem] = problems_of(azure_environ(GEOROLLOUT_TARGETS=targets))
    assert problem.startswith("GEOROLLOUT_TARGETS: ")
    assert fragment in problem


@pytest.mark.parametrize(
    "schedule", ["0 */5 * * * *", "*/30 * * * * *", "0 0 9-17 * * mon-fri", "5,10 0 0 1 jan *"]
)
def test_valid_ncrontab_schedules(schedule: str) -> None:
    assert load_config(azure_environ(GEOROLLOUT_PROBE_SCHEDULE=schedule)).probe.schedule == schedule


@pytest.mark.parametrize("schedule", ["60 * * * * *", "* * 24 * * *", "*/0 * * * * *", "* * * * *"])
def test_invalid_ncrontab_schedules(schedule: str) -> None:
    [problem] = problems_of(azure_environ(GEOROLLOUT_PROBE_SCHEDULE=schedule))
    assert problem.startswith("GEOROLLOUT_PROBE_SCHEDULE: ")


def test_error_message_lists_one_line_per_problem() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_config({"GEOROLLOUT_REGIONS": "eastus"})
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert len(lines) == 1 + len(raised.value.problems)
    assert any("GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID: is required" in line for line in lines)


# --- the instance name ------------------------------------------------------------------


def test_an_explicit_instance_name_fills_every_template_that_asks_for_it() -> None:
    targets = [
        {"repository": "models/*", "endpoint": "{instance}-{name}"},
        {"repository": "legacy/*", "endpoint": "{repository}"},  # explicit: kept as is
        {"repository": "*"},
    ]
    config = load_config(
        azure_environ(GEOROLLOUT_INSTANCE_NAME="prod-weu", GEOROLLOUT_TARGETS=json.dumps(targets))
    )
    assert config.instance_name == "prod-weu"
    assert [rule.endpoint_template for rule in config.targets] == [
        "prod-weu-{name}",
        "{repository}",
        "{repository}-prod-weu",
    ]


def test_two_deployments_get_different_endpoint_names_for_the_same_repository() -> None:
    def endpoint_for(**changes: str) -> str:
        [rule] = load_config(azure_environ(**changes)).targets
        return endpoint_name(rule.endpoint_template, "models/llm")

    here = endpoint_for()
    assert here == "models-llm-" + instance_of("contoso.azurecr.io", workspace_id("ws-east"))
    assert endpoint_for() == here  # every process of one deployment agrees
    assert endpoint_for(GEOROLLOUT_REGISTRY_LOGIN_SERVER="fabrikam.azurecr.io") != here
    assert endpoint_for(GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID=workspace_id("ws-other")) != here
    # Only the primary's workspace counts: a secondary can change without renaming.
    assert endpoint_for(GEOROLLOUT_REGION_WESTEUROPE_WORKSPACE_ID=workspace_id("ws-new")) == here
    # Pinning the instance name keeps the names whatever else changes.
    pinned = endpoint_for(GEOROLLOUT_INSTANCE_NAME="georo1")
    assert pinned == "models-llm-georo1"
    assert (
        endpoint_for(
            GEOROLLOUT_INSTANCE_NAME="georo1",
            GEOROLLOUT_REGISTRY_LOGIN_SERVER="fabrikam.azurecr.io",
        )
        == pinned
    )


@pytest.mark.parametrize("instance", ["Prod", "-x", "x" * 13, "a_b"])
def test_an_invalid_instance_name_is_reported(instance: str) -> None:
    [problem] = problems_of(azure_environ(GEOROLLOUT_INSTANCE_NAME=instance))
    assert problem.startswith("GEOROLLOUT_INSTANCE_NAME: instance name ")


def test_no_instance_name_is_derived_from_an_invalid_primary() -> None:
    # The primary's own problem is reported; no second, derived one.
    problems = problems_of(azure_environ(GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID="/nope"))
    assert [line.split(":", 1)[0] for line in problems] == ["GEOROLLOUT_REGION_EASTUS_WORKSPACE_ID"]


def test_the_instance_placeholder_is_a_known_template_field() -> None:
    [problem] = problems_of(azure_environ(GEOROLLOUT_TARGETS='[{"endpoint": "{tag}"}]'))
    assert "{repository}, {name}, {instance}" in problem
