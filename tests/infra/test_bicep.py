"""Checks infra/'s Bicep templates, parsed with pycep-parser, against the deployment georollout needs.

Every resource, setting and role the Azure deployment relies on is asserted by name and value;
the function app's settings are compared with the configuration catalogue (shared.config.SETTINGS).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

import pytest

from shared.config import REGION_PLACEHOLDER, SETTINGS
from shared.intake.webhook_signature import secret_key
from tests.infra.templates import (
    INFRA_DIR,
    Templates,
    bicep_files,
    body,
    decorator,
    evaluate,
    expression_text,
    loop_of,
)

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0a970"
EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
AZUREML_DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

# Roles that would let the function do anything or hand out roles: never granted.
PRIVILEGED_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}

FUNCTION_PRINCIPAL = "functionApp.outputs.principalId"

# main.bicep module -> (role module, role, principal expression, loop array or None).
EXPECTED_ROLE_ASSIGNMENTS: dict[str, tuple[str, str, str, str | None]] = {
    "functionAcrPull": ("core/security/registry-role.bicep", ACR_PULL, FUNCTION_PRINCIPAL, None),
    "functionTableData": (
        "core/security/storage-table-role.bicep",
        STORAGE_TABLE_DATA_CONTRIBUTOR,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionBlobData": (
        "core/security/storage-account-role.bicep",
        STORAGE_BLOB_DATA_OWNER,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionQueueData": (
        "core/security/storage-account-role.bicep",
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionEventsSender": (
        "core/security/event-grid-topic-role.bicep",
        EVENTGRID_DATA_SENDER,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionWebhookTokenReader": (
        "core/security/key-vault-secret-role.bicep",
        KEY_VAULT_SECRETS_USER,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionBuildWebhookSecretsReader": (
        "core/security/key-vault-secret-role.bicep",
        KEY_VAULT_SECRETS_USER,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionTelemetry": (
        "core/security/app-insights-role.bicep",
        MONITORING_METRICS_PUBLISHER,
        FUNCTION_PRINCIPAL,
        None,
    ),
    "functionWorkspaceRoles": (
        "core/security/workspace-role.bicep",
        AZUREML_DATA_SCIENTIST,
        FUNCTION_PRINCIPAL,
        "workspaceIdList",
    ),
    "functionIdentityOperator": (
        "core/security/identity-role.bicep",
        MANAGED_IDENTITY_OPERATOR,
        FUNCTION_PRINCIPAL,
        "regionNames",
    ),
    "endpointAcrPull": (
        "core/security/registry-role.bicep",
        ACR_PULL,
        "endpointIdentities.outputs.principalIds[i]",
        "regionNames",
    ),
    "systemTopicDeadLetter": (
        "core/security/storage-container-role.bicep",
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "events.outputs.systemTopicPrincipalId",
        None,
    ),
    "eventsTopicDeadLetter": (
        "core/security/storage-container-role.bicep",
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "events.outputs.eventsTopicPrincipalId",
        None,
    ),
}

# The scope each role module assigns at: the existing resource it names, never a group.
ROLE_MODULE_SCOPES = {
    "core/security/registry-role.bicep": "Microsoft.ContainerRegistry/registries",
    "core/security/storage-account-role.bicep": "Microsoft.Storage/storageAccounts",
    "core/security/storage-table-role.bicep": "Microsoft.Storage/storageAccounts/tableServices/tables",
    "core/security/storage-container-role.bicep": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "core/security/event-grid-topic-role.bicep": "Microsoft.EventGrid/topics",
    "core/security/workspace-role.bicep": "Microsoft.MachineLearningServices/workspaces",
    "core/security/identity-role.bicep": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "core/security/key-vault-secret-role.bicep": "Microsoft.KeyVault/vaults/secrets",
    "core/security/app-insights-role.bicep": "Microsoft.Insights/components",
}

# APPLICATIONINSIGHTS_CONNECTION_STRING names an ingestion endpoint, not a credential: the
# component has local auth off, so the host must authenticate with Entra ID
# (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD).
CREDENTIAL_FREE_CONNECTION_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
CREDENTIAL_WORDS = re.compile(r"CONNECTION_STRING|KEY|PASSWORD|SECRET|SAS", re.IGNORECASE)
SECRET_PARAMETER_WORDS = re.compile(r"token|key|password|secret|connectionstring", re.IGNORECASE)
NON_SECRET_PARAMETER_SUFFIXES = ("Name", "Header", "Prefix", "Uri", "Id")
# Passed on to APPLICATIONINSIGHTS_CONNECTION_STRING: no credential (see above).
NON_SECRET_PARAMETERS = {"applicationInsightsConnectionString"}
MAIN = "main.bicep"
FUNCTION_APP = "app/function-app.bicep"
POSTDEPLOY = "postdeploy/main.bicep"
KEY_VAULT = "core/security/key-vault.bicep"
BUILD_SECRETS_SETTING = "GEOROLLOUT_BUILD_WEBHOOK_SECRETS"


def app_settings(templates: Templates) -> tuple[dict[str, Any], dict[str, Any]]:
    """The function app's settings: (static name -> value, per-region name template -> value)."""
    app = templates.file(FUNCTION_APP)
    site = body(app["resources"]["functionApp"])
    concat = site["properties"]["siteConfig"]["appSettings"]["function"]
    assert concat["type"] == "concat", "appSettings is concat(<setting lists>)"
    static: dict[str, Any] = {}
    per_region: dict[str, Any] = {}
    for variable_name in concat["parameters"].values():
        variable = app["variables"][variable_name]
        loop = loop_of(variable)
        if loop is None:
            for pair in variable["value"]:
                static[pair["name"]] = pair["value"]
        else:
            assert loop["detail"]["array_name"] == "regionNames", variable_name
            entry = variable["value"]["config"]
            per_region[entry["name"]] = entry["value"]
    return static, per_region


def region_template(setting_name: str) -> str:
    """How function-app.bicep spells a per-region setting name in its region loop."""
    return setting_name.replace(REGION_PLACEHOLDER, "${toUpper(region)}")


def test_every_bicep_file_parses(templates: Templates) -> None:
    assert len(templates.parsed) == len(bicep_files()) >= 15
    failures = {path: doc["error"] for path, doc in templates.parsed.items() if "error" in doc}
    assert failures == {}


def test_main_is_the_azd_entry_point(templates: Templates) -> None:
    main = templates.file(MAIN)
    assert main["globals"]["scope"]["value"] == "subscription"
    assert body(main["resources"]["rg"])["name"]
    azure_yaml = (INFRA_DIR.parent / "azure.yaml").read_text()
    assert re.search(r"^\s+path: infra$", azure_yaml, re.MULTILINE)
    assert re.search(r"^\s+host: function$", azure_yaml, re.MULTILINE)
    assert re.search(r"^\s+language: python$", azure_yaml, re.MULTILINE)
    assert "run: bash infra/hooks/postdeploy.sh" in azure_yaml

    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    declared = main["parameters"]
    assert set(parameters) <= set(declared), "main.parameters.json names unknown parameters"
    without_default = {name for name, spec in declared.items() if spec["default"] is None}
    assert without_default <= set(parameters), "a required parameter has no value source"


def test_registry_is_premium_geo_replicated_with_regional_endpoints(templates: Templates) -> None:
    registry = templates.resource("app/registry.bicep", "registry")
    assert registry["type"] == "Microsoft.ContainerRegistry/registries"
    assert registry["api_version"].endswith("-preview"), "regionalEndpoints is a preview property"
    config = body(registry)
    assert config["sku"]["name"] == "Premium"
    properties = config["properties"]
    assert properties["regionalEndpoints"] == "Enabled"
    assert properties["adminUserEnabled"] is False
    assert properties["anonymousPullEnabled"] is False

    replications = templates.resource("app/registry.bicep", "replications")
    assert replications["type"] == "Microsoft.ContainerRegistry/registries/replications"
    assert loop_of(replications) == {
        "type": "array",
        "detail": {"item_name": "replicaLocation", "array_name": "replicaLocations"},
    }
    assert body(replications)["location"] == "replicaLocation"
    params = body(templates.module(MAIN, "registry"))["params"]
    assert expression_text(params["replicaLocations"]) == "skip(regionNames, 1)"
    assert params["location"] == "primaryRegion"


def test_registry_retention_cannot_purge_a_serving_digest(templates: Templates) -> None:
    # georollout deploys by digest: a digest whose tag moved on may still serve in a region, and
    # untagged-manifest retention would purge it (infra/README.md, "Untagged manifests").
    policies = body(templates.resource("app/registry.bicep", "registry"))["properties"]["policies"]
    assert policies["retentionPolicy"]["status"] == "disabled"


def test_function_app_is_flex_consumption_python_311_with_managed_identity(
    templates: Templates,
) -> None:
    plan = body(templates.resource(FUNCTION_APP, "plan"))
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = body(templates.resource(FUNCTION_APP, "functionApp"))
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    assert properties["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    deployment_auth = properties["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert deployment_auth == {"type": "SystemAssignedIdentity"}
    for policy in ("ftpPublishing", "scmPublishing"):
        assert body(templates.resource(FUNCTION_APP, policy))["properties"] == {"allow": False}

    static, _ = app_settings(templates)
    assert static["AzureWebJobsStorage__accountName"] == "storageAccountName"
    assert static["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in static, "the host must use its identity, not a key"
    assert static["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"


def test_storage_takes_only_entra_id_over_tls_12(templates: Templates) -> None:
    storage = body(templates.resource("core/storage/storage-account.bicep", "storage"))
    properties = storage["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    table = body(templates.resource("core/storage/storage-account.bicep", "table"))
    assert table["name"] == "tableName"


def test_event_grid_has_a_system_topic_and_a_cloudevents_topic(templates: Templates) -> None:
    system_topic = body(templates.resource("app/events.bicep", "systemTopic"))
    assert system_topic["properties"] == {
        "source": "registryId",
        "topicType": "Microsoft.ContainerRegistry.Registries",
    }
    assert system_topic["identity"] == {"type": "SystemAssigned"}
    events_topic = body(templates.resource("app/events.bicep", "eventsTopic"))
    assert events_topic["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert events_topic["properties"]["disableLocalAuth"] is True
    assert events_topic["identity"] == {"type": "SystemAssigned"}
    events = body(templates.module(MAIN, "events"))["params"]
    assert expression_text(events["registryId"]) == "registry.outputs.id"


def assert_function_subscription(
    subscription: dict[str, Any], function_name: str, schema: str
) -> dict[str, Any]:
    properties = body(subscription)["properties"]
    destination = properties["destination"]
    assert destination["endpointType"] == "AzureFunction", "a function destination, not a webhook"
    assert (
        destination["properties"]["resourceId"] == f"${{functionApp.id}}/functions/{function_name}"
    )
    assert properties["eventDeliverySchema"] == schema
    assert properties["retryPolicy"] == "retryPolicy"
    assert properties["deadLetterWithResourceIdentity"] == "deadLetter"
    return properties  # type: ignore[no-any-return]


def test_postdeploy_subscribes_the_functions_with_retries_and_dead_letters(
    templates: Templates,
) -> None:
    postdeploy = templates.file(POSTDEPLOY)
    image_pushed = postdeploy["resources"]["imagePushed"]
    assert image_pushed["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    properties = assert_function_subscription(image_pushed, "on_image_pushed", "EventGridSchema")
    assert properties["filter"]["includedEventTypes"] == ["Microsoft.ContainerRegistry.ImagePushed"]

    rollout_events = postdeploy["resources"]["rolloutEvents"]
    assert rollout_events["type"] == "Microsoft.EventGrid/topics/eventSubscriptions"
    assert_function_subscription(rollout_events, "on_rollout_event", "CloudEventSchemaV1_0")

    variables = postdeploy["variables"]
    assert variables["retryPolicy"]["value"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    dead_letter = variables["deadLetter"]["value"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == (
        "deadLetterContainerName"
    )


def test_postdeploy_creates_one_regional_push_webhook_per_region(templates: Templates) -> None:
    webhooks = templates.file("postdeploy/webhooks.bicep")
    webhook = webhooks["resources"]["regionalWebhooks"]
    assert webhook["type"] == "Microsoft.ContainerRegistry/registries/webhooks"
    assert loop_of(webhook) == {
        "type": "array",
        "detail": {"item_name": "region", "array_name": "regionNames"},
    }
    config = body(webhook)
    assert config["location"] == "region", "a webhook in a replica's region is a regional webhook"
    properties = config["properties"]
    assert properties["actions"] == ["push"]
    assert properties["serviceUri"] == "${hookUrl}?region=${region}&code=${functionKey}"
    assert webhooks["variables"]["hookUrl"]["value"].endswith("/api/hooks/acr")
    assert properties["customHeaders"] == {
        "'${webhookTokenHeader}'": "${webhookTokenPrefix}${webhookToken}"
    }
    token = webhooks["parameters"]["webhookToken"]
    assert decorator(token, "secure") and token["default"] is None
    module = body(templates.module(POSTDEPLOY, "webhooks"))
    assert expression_text(module["params"]["webhookToken"]) == (
        "vault.getSecret(webhookTokenSecretName)"
    )

    hook = (INFRA_DIR / "hooks" / "postdeploy.sh").read_text()
    assert "postdeploy/main.bicep" in hook
    assert "az deployment group create" in hook


def test_webhooks_call_with_acr_hooks_own_function_key_not_the_hosts_default(
    templates: Templates,
) -> None:
    webhooks = templates.file("postdeploy/webhooks.bicep")
    uri = body(webhooks["resources"]["regionalWebhooks"])["properties"]["serviceUri"]
    assert uri.endswith("&code=${functionKey}")
    key = expression_text(webhooks["variables"]["functionKey"]["value"])
    assert key == "acrHookFunction.listKeys()[webhookKeyName]"
    function = webhooks["resources"]["acrHookFunction"]
    assert function["type"] == "Microsoft.Web/sites/functions" and function["existing"] is True
    assert body(function) == {"parent": "functionApp", "name": "acr_hook"}
    # Nothing reads the host's keys any more: not the default function key, not the master key.
    for path in ("postdeploy/webhooks.bicep", POSTDEPLOY):
        rendered = json.dumps(templates.file(path))
        assert "functionKeys" not in rendered and "masterKey" not in rendered, path
        assert not any(
            resource["type"] == "Microsoft.Web/sites/host"
            for resource in templates.file(path)["resources"].values()
        ), path

    # main.bicep names the key, hands it to the module, and the hook passes the same name.
    postdeploy = templates.file(POSTDEPLOY)
    assert postdeploy["parameters"]["webhookKeyName"]["default"] == "acrwebhook"
    module = body(templates.module(POSTDEPLOY, "webhooks"))
    assert module["params"]["webhookKeyName"] == "webhookKeyName"
    assert webhooks["parameters"]["webhookKeyName"]["default"] is None
    hook = (INFRA_DIR / "hooks" / "postdeploy.sh").read_text()
    assert "readonly webhook_key_name=acrwebhook" in hook
    assert 'webhookKeyName="$webhook_key_name"' in hook


def test_endpoint_identities_one_per_region_with_acr_pull(templates: Templates) -> None:
    identities = templates.resource("app/endpoint-identities.bicep", "endpointIdentities")
    assert identities["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert loop_of(identities) == {
        "type": "array",
        "detail": {"item_name": "region", "array_name": "regionNames"},
    }
    assert body(identities)["location"] == "region"
    _, per_region = app_settings(templates)
    identity_setting = region_template("GEOROLLOUT_REGION_{REGION}_ENDPOINT_IDENTITY_ID")
    assert expression_text(per_region[identity_setting]) == "endpointIdentityIds[i]"
    params = body(templates.module(MAIN, "functionApp"))["params"]
    assert expression_text(params["endpointIdentityIds"]) == "endpointIdentities.outputs.ids"


def test_monitoring_and_diagnostic_settings(templates: Templates) -> None:
    monitoring = "core/monitor/monitoring.bicep"
    assert templates.resource(monitoring, "logAnalytics")["type"] == (
        "Microsoft.OperationalInsights/workspaces"
    )
    insights = body(templates.resource(monitoring, "applicationInsights"))
    assert expression_text(insights["properties"]["WorkspaceResourceId"]) == "logAnalytics.id"
    assert insights["properties"]["DisableLocalAuth"] is True
    static, _ = app_settings(templates)
    assert static["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"

    scopes = {
        (path, body(resource)["scope"])
        for path, doc in templates.parsed.items()
        for resource in doc.get("resources", {}).values()
        if resource["type"] == "Microsoft.Insights/diagnosticSettings"
    }
    assert {
        ("app/registry.bicep", "registry"),
        ("app/events.bicep", "systemTopic"),
        ("app/events.bicep", "eventsTopic"),
    } <= scopes
    for path, doc in templates.parsed.items():
        for resource in doc.get("resources", {}).values():
            if resource["type"] == "Microsoft.Insights/diagnosticSettings":
                assert body(resource)["properties"]["workspaceId"] == "logAnalyticsWorkspaceId", (
                    path
                )


@pytest.mark.parametrize("module_name", sorted(EXPECTED_ROLE_ASSIGNMENTS))
def test_role_assignment(templates: Templates, module_name: str) -> None:
    path, role, principal, loop_array = EXPECTED_ROLE_ASSIGNMENTS[module_name]
    module = templates.module(MAIN, module_name)
    assert module["detail"]["path"] == path
    loop = loop_of(module)
    assert (loop["detail"]["array_name"] if loop else None) == loop_array
    params = body(module)["params"]
    assert params["roleDefinitionId"] == role
    assert expression_text(params["principalId"]) == principal


@pytest.mark.parametrize("path", sorted(ROLE_MODULE_SCOPES))
def test_role_module_assigns_only_its_roles_at_its_resource(
    templates: Templates, path: str
) -> None:
    role_module = templates.file(path)
    resources = role_module["resources"]
    scoped = [resource for resource in resources.values() if resource["existing"]]
    assert len(scoped) == 1 and scoped[0]["type"] == ROLE_MODULE_SCOPES[path]
    scope_symbol = next(name for name, resource in resources.items() if resource["existing"])
    assignment = body(resources["assignment"])
    assert resources["assignment"]["type"] == "Microsoft.Authorization/roleAssignments"
    assert assignment["scope"] == scope_symbol
    assert expression_text(assignment["properties"]["roleDefinitionId"]) == (
        "subscription_resource_id(Microsoft.Authorization/roleDefinitions, roleDefinitionId, null, null)"
    )
    allowed = decorator(role_module["parameters"]["roleDefinitionId"], "allowed")
    assert allowed, "each role module accepts only the roles that fit its scope"
    used = {spec[1] for spec in EXPECTED_ROLE_ASSIGNMENTS.values() if spec[0] == path}
    assert used <= set(allowed)


def test_nothing_grants_privileged_roles(templates: Templates) -> None:
    for source in [*bicep_files(), INFRA_DIR / "hooks" / "postdeploy.sh"]:
        text = source.read_text().lower()
        for role_id, role_name in PRIVILEGED_ROLES.items():
            assert role_id not in text, f"{source} mentions {role_name}"
    for path, doc in templates.parsed.items():
        for resource in doc.get("resources", {}).values():
            if resource["type"] == "Microsoft.Authorization/roleAssignments":
                assert path in ROLE_MODULE_SCOPES, f"{path} assigns a role outside a role module"
    granted = {spec[1] for spec in EXPECTED_ROLE_ASSIGNMENTS.values()}
    assert granted.isdisjoint(PRIVILEGED_ROLES)
    for path in ROLE_MODULE_SCOPES:
        allowed = decorator(templates.file(path)["parameters"]["roleDefinitionId"], "allowed")
        assert set(allowed).isdisjoint(PRIVILEGED_ROLES), path


def test_no_secret_is_a_plain_parameter_default(templates: Templates) -> None:
    secure_parameters = 0
    for path, doc in templates.parsed.items():
        for name, parameter in doc.get("parameters", {}).items():
            if decorator(parameter, "secure"):
                secure_parameters += 1
                assert parameter["default"] is None, f"{path}: secure {name} has a default"
            elif (
                SECRET_PARAMETER_WORDS.search(name)
                and not name.endswith(NON_SECRET_PARAMETER_SUFFIXES)
                and name not in NON_SECRET_PARAMETERS
            ):
                pytest.fail(f"{path}: {name} looks like a secret but is not @secure()")
    assert secure_parameters >= 3
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["acrWebhookToken"]["value"].startswith("$(secretOrRandomPassword ")


def test_every_setting_the_code_reads_is_set(templates: Templates) -> None:
    static, per_region = app_settings(templates)
    deployed = [spec for spec in SETTINGS if not spec.local_only]
    assert deployed, "shared.config.SETTINGS lists no setting"
    for spec in deployed:
        if spec.per_region:
            assert region_template(spec.name) in per_region, spec.name
        else:
            assert spec.name in static, spec.name
    for spec in SETTINGS:
        if spec.local_only:
            assert spec.name not in static, f"{spec.name} is for the local environment only"


def test_secrets_come_from_key_vault_and_no_setting_holds_a_key(templates: Templates) -> None:
    static, per_region = app_settings(templates)
    for spec in SETTINGS:
        if spec.secret and not spec.local_only:
            value = static[spec.name]
            assert isinstance(value, str) and value.startswith("@Microsoft.KeyVault("), spec.name
    for name, value in {**static, **per_region}.items():
        rendered = json.dumps(value)
        assert "listKeys" not in rendered and "list_func" not in rendered, name
        if CREDENTIAL_WORDS.search(name) and name not in CREDENTIAL_FREE_CONNECTION_SETTINGS:
            assert isinstance(value, str) and value.startswith("@Microsoft.KeyVault("), name


def test_setting_defaults_match_the_configuration_catalogue(templates: Templates) -> None:
    static, _ = app_settings(templates)
    module_params = body(templates.module(MAIN, "functionApp"))["params"]
    main_parameters = templates.file(MAIN)["parameters"]
    compared = 0
    for spec in SETTINGS:
        value = static.get(spec.name)
        if spec.default is None or not isinstance(value, str) or value not in module_params:
            continue
        source = module_params[value]
        if isinstance(source, str) and source in main_parameters:
            assert main_parameters[source]["default"] == spec.default, spec.name
            compared += 1
    assert compared >= 10


def azd_random_password() -> str:
    """What azd's secretOrRandomPassword draws when it finds no secret (azure-dev,
    pkg/cmdsubst/secretOrRandomPassword.go): 5 lowercase, 5 uppercase and 5 digits, shuffled.
    Its alphabet has no `_`, so such a password never starts with `whsec_`."""
    chars = [secrets.choice(string.ascii_lowercase) for _ in range(5)]
    chars += [secrets.choice(string.ascii_uppercase) for _ in range(5)]
    chars += [secrets.choice(string.digits) for _ in range(5)]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def stored_build_secrets(templates: Templates, *, read_back: str, entropy: str) -> str:
    """The value the template writes into the build webhook secret, given what azd read back
    from Key Vault (or drew at random) and the fresh entropy password."""
    key_vault = templates.file(KEY_VAULT)
    secret = body(key_vault["resources"]["buildWebhookSecretsSecret"])
    scope = {"buildWebhookSecrets": read_back, "buildWebhookSecretEntropy": entropy}
    value = evaluate(secret["properties"]["value"], scope, key_vault["variables"])
    assert isinstance(value, str)
    return value


def test_build_webhook_secrets_are_a_key_vault_reference_to_their_own_secret(
    templates: Templates,
) -> None:
    static, _ = app_settings(templates)
    assert (
        static[BUILD_SECRETS_SETTING] == "@Microsoft.KeyVault(SecretUri=${buildWebhookSecretsUri})"
    )
    params = body(templates.module(MAIN, "functionApp"))["params"]
    assert expression_text(params["buildWebhookSecretsUri"]) == (
        "keyVault.outputs.buildWebhookSecretsUri"
    )

    key_vault = templates.file(KEY_VAULT)
    secret = key_vault["resources"]["buildWebhookSecretsSecret"]
    assert secret["type"] == "Microsoft.KeyVault/vaults/secrets"
    assert body(secret)["parent"] == "vault"
    assert body(secret)["name"] == "buildWebhookSecretsName"
    outputs = key_vault["outputs"]
    assert expression_text(outputs["buildWebhookSecretsUri"]["value"]) == (
        "buildWebhookSecretsSecret.properties.secretUri"
    )
    assert expression_text(outputs["buildWebhookSecretsName"]["value"]) == (
        "buildWebhookSecretsSecret.name"
    )
    for name in ("buildWebhookSecrets", "buildWebhookSecretEntropy"):
        parameter = key_vault["parameters"][name]
        assert decorator(parameter, "secure") and parameter["default"] is None, name

    # A secret of its own (not the ACR token's), which the function may read and nothing else.
    main = templates.file(MAIN)
    names = main["variables"]
    assert names["buildWebhookSecretsName"]["value"] != names["webhookTokenSecretName"]["value"]
    vault_params = body(templates.module(MAIN, "keyVault"))["params"]
    assert vault_params["buildWebhookSecretsName"] == "buildWebhookSecretsName"
    reader = body(templates.module(MAIN, "functionBuildWebhookSecretsReader"))["params"]
    assert expression_text(reader["secretName"]) == "keyVault.outputs.buildWebhookSecretsName"


def test_azd_reads_the_build_webhook_secrets_back_and_draws_fresh_entropy(
    templates: Templates,
) -> None:
    main = templates.file(MAIN)
    secret_name = main["variables"]["buildWebhookSecretsName"]["value"]
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["buildWebhookSecrets"]["value"] == (
        f"$(secretOrRandomPassword ${{AZURE_KEY_VAULT_NAME}} {secret_name})"
    )
    # The README's commands find the secret by this azd output.
    assert main["outputs"]["GEOROLLOUT_BUILD_WEBHOOK_SECRETS_NAME"]["value"] == (
        "buildWebhookSecretsName"
    )
    # No vault and secret name: azd draws a new password every time and never reads one back.
    assert parameters["buildWebhookSecretEntropy"]["value"] == "$(secretOrRandomPassword)"
    for name in ("buildWebhookSecrets", "buildWebhookSecretEntropy"):
        parameter = main["parameters"][name]
        assert decorator(parameter, "secure") and parameter["default"] is None, name
    vault_params = body(templates.module(MAIN, "keyVault"))["params"]
    assert vault_params["buildWebhookSecrets"] == "buildWebhookSecrets"
    assert vault_params["buildWebhookSecretEntropy"] == "buildWebhookSecretEntropy"

    # azd reads the secret back with the deployer's identity, so the deployer may read it.
    deployer = templates.module(MAIN, "deployerBuildWebhookSecretsReader")
    assert deployer["detail"]["path"] == "core/security/key-vault-secret-role.bicep"
    assert expression_text(deployer["config"]["condition"]) == "not(empty(deployerPrincipalId))"
    params = body(deployer)["params"]
    assert params["principalId"] == "deployerPrincipalId"
    assert params["principalType"] == "User"
    assert params["roleDefinitionId"] == KEY_VAULT_SECRETS_USER
    assert expression_text(params["secretName"]) == "keyVault.outputs.buildWebhookSecretsName"


def test_the_first_provision_stores_a_whsec_secret_from_two_random_passwords(
    templates: Templates,
) -> None:
    first, entropy = azd_random_password(), azd_random_password()
    stored = stored_build_secrets(templates, read_back=first, entropy=entropy)
    assert stored.startswith("whsec_")
    # The app's own parser accepts it (shared.config splits on commas, then this per secret),
    # and its HMAC key is all 30 random characters, not just the first password's 15.
    assert secret_key(stored) == (first + entropy).encode()
    assert len(secret_key(stored)) == 30
    other = stored_build_secrets(templates, read_back=first, entropy=azd_random_password())
    assert other != stored, "the entropy password must reach the generated secret"


@pytest.mark.parametrize(
    "kept",
    [
        "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXY=",
        # During a rotation: the new secret and the old one, as the operator stored them.
        "whsec_bmV3LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm,whsec_b2xkLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm",
    ],
)
def test_a_later_provision_writes_the_stored_secrets_back_unchanged(
    templates: Templates, kept: str
) -> None:
    stored = stored_build_secrets(templates, read_back=kept, entropy=azd_random_password())
    assert stored == kept
    assert all(len(secret_key(part)) >= 16 for part in stored.split(","))
