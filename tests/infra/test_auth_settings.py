"""Checks the optional App Service authentication (Easy Auth) in front of the function app
(infra/README.md, "Operator routes behind Entra ID"): off unless an app registration is given,
and when on, a bearer token on every route but the machine-called ones, with the function keys
still required behind it and no secret anywhere in the template."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest

from tests.infra.templates import INFRA_DIR, Templates, body, decorator, evaluate

MAIN = "main.bicep"
FUNCTION_APP = "app/function-app.bicep"
CLIENT_ID_PARAMETER = "operatorAuthClientId"
CLIENT_ID_AZD_VARIABLE = "GEOROLLOUT_OPERATOR_AUTH_CLIENT_ID"
EXAMPLE_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
FUNCTION_APP_SOURCE = INFRA_DIR.parent / "function_app.py"

# The routes whose callers cannot present a user token, each guarded by its own secret: the
# ACR webhooks (acrwebhook key + token), build systems (function key + signature), liveness
# probes (anonymous by design) and Event Grid (its system key).
UNAUTHENTICATED_PATHS = [
    "/api/hooks/acr",
    "/api/hooks/build",
    "/api/health",
    "/runtime/webhooks/eventgrid",
]
ISSUER = "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"


def auth_settings(templates: Templates) -> dict[str, Any]:
    resource = templates.resource(FUNCTION_APP, "authSettings")
    assert resource["type"] == "Microsoft.Web/sites/config"
    return resource


def deployed(templates: Templates, client_id: str) -> bool:
    """Whether ARM deploys authsettingsV2 when azd passes `client_id` for the parameter."""
    condition = auth_settings(templates)["config"]["condition"]
    variables = templates.file(FUNCTION_APP)["variables"]
    taken = evaluate(condition, {CLIENT_ID_PARAMETER: client_id}, variables)
    assert isinstance(taken, bool)
    return taken


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key path, leaf value) under a parsed object."""
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [pair for i, value in enumerate(node) for pair in walk(value, f"{path}[{i}]")]
    return [(path, node)]


def identifiers(value: Any) -> set[str]:
    """The names a parsed value may refer to: itself when it is a bare identifier (pycep spells
    a reference and a one-word literal alike), and every name inside its `${...}` parts."""
    if not isinstance(value, str):
        return set()
    names = set(re.findall(r"[A-Za-z_]\w*", " ".join(re.findall(r"\$\{(.*?)\}", value))))
    return names | ({value} if re.fullmatch(r"[A-Za-z_]\w*", value) else set())


def http_routes() -> dict[str, str | None]:
    """function_app.py's HTTP routes -> the attribute name of their `auth_level` (None: the
    app's default), read from the `@app.route(...)` decorators."""
    routes: dict[str, str | None] = {}
    for node in ast.walk(ast.parse(FUNCTION_APP_SOURCE.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr != "route":
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        route = keywords.get("route")
        assert isinstance(route, ast.Constant) and isinstance(route.value, str)
        level = keywords.get("auth_level")
        routes[route.value] = level.attr if isinstance(level, ast.Attribute) else None
    return routes


def test_the_client_id_parameter_reaches_the_function_app_and_defaults_to_off(
    templates: Templates,
) -> None:
    main_parameter = templates.file(MAIN)["parameters"][CLIENT_ID_PARAMETER]
    assert main_parameter["type"] == "string"
    assert main_parameter["default"] == ""
    assert not decorator(main_parameter, "secure"), "a client id is no secret"
    module_params = body(templates.module(MAIN, "functionApp"))["params"]
    assert module_params[CLIENT_ID_PARAMETER] == CLIENT_ID_PARAMETER
    app_parameter = templates.file(FUNCTION_APP)["parameters"][CLIENT_ID_PARAMETER]
    assert app_parameter["type"] == "string"
    assert app_parameter["default"] == ""
    # azd fills it from its environment; unset, azd substitutes an empty string.
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters[CLIENT_ID_PARAMETER]["value"] == f"${{{CLIENT_ID_AZD_VARIABLE}}}"


def test_no_client_id_deploys_no_authentication(templates: Templates) -> None:
    # Today's deployments (the parameter left empty) get no authsettingsV2 at all.
    assert deployed(templates, "") is False
    assert deployed(templates, EXAMPLE_CLIENT_ID) is True
    # authsettingsV2 is the only authentication configuration anywhere in infra/.
    found = [
        (path, symbol)
        for path, doc in templates.parsed.items()
        for symbol, resource in doc.get("resources", {}).items()
        if resource["type"] in ("Microsoft.Web/sites/config", "Microsoft.Web/sites/slots/config")
        and "auth" in str(body(resource)["name"]).lower()
    ]
    assert found == [(FUNCTION_APP, "authSettings")]


def test_with_a_client_id_every_route_needs_a_token_but_the_machine_routes(
    templates: Templates,
) -> None:
    resource = auth_settings(templates)
    site = templates.resource(FUNCTION_APP, "functionApp")
    assert resource["api_version"] == site["api_version"], "one Microsoft.Web API version"
    config = body(resource)
    assert config["parent"] == "functionApp"
    assert config["name"] == "authsettingsV2"
    properties = config["properties"]
    assert properties["platform"] == {"enabled": True}

    validation = properties["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    excluded = validation["excludedPaths"]
    if isinstance(excluded, str):  # a variable of this file
        excluded = templates.file(FUNCTION_APP)["variables"][excluded]["value"]
    assert excluded == UNAUTHENTICATED_PATHS

    provider = properties["identityProviders"]["azureActiveDirectory"]
    assert provider["enabled"] is True
    assert provider["registration"] == {
        "clientId": CLIENT_ID_PARAMETER,
        "openIdIssuer": ISSUER,
    }
    # v2.0 tokens carry the client id (always accepted); v1.0 ones the Application ID URI.
    assert provider["validation"]["allowedAudiences"] == [f"api://${{{CLIENT_ID_PARAMETER}}}"]
    assert set(properties["identityProviders"]) == {"azureActiveDirectory"}


def test_excluded_paths_are_exactly_the_machine_routes_of_the_app() -> None:
    routes = http_routes()
    for path in UNAUTHENTICATED_PATHS:
        # Easy Auth compares each entry with the request path; `/*` would open a whole subtree.
        assert "*" not in path, path
        if path.startswith("/api/"):
            assert path.removeprefix("/api/") in routes, f"{path} is no route of the app"
    # What operators read and do stays behind the token, /api/health/detail included.
    assert not any("rollouts" in path for path in UNAUTHENTICATED_PATHS)
    assert "health/detail" in routes and "/api/health/detail" not in UNAUTHENTICATED_PATHS


def test_easy_auth_comes_in_front_of_the_function_keys_not_instead(
    templates: Templates,
) -> None:
    source = FUNCTION_APP_SOURCE.read_text()
    assert "func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)" in source
    anonymous = {route for route, level in http_routes().items() if level == "ANONYMOUS"}
    assert anonymous == {"health"}, "only the liveness probe may skip the function key"
    # The template sets no Easy Auth variable itself: the platform injects WEBSITE_AUTH_ENABLED
    # only when authentication really runs, and the app trusts X-MS-CLIENT-PRINCIPAL-NAME only
    # then (a setting of ours would make it trust a header any caller can send).
    variables = templates.file(FUNCTION_APP)["variables"]
    for name, variable in variables.items():
        for path, value in walk(variable["value"]):
            assert not (isinstance(value, str) and value.upper().startswith("WEBSITE_AUTH")), (
                f"{name}{path} sets {value}"
            )


@pytest.mark.parametrize("word", ["secret", "certificate", "thumbprint", "password"])
def test_no_secret_in_the_authentication_settings(templates: Templates, word: str) -> None:
    # Token-only flow: callers bring a bearer token, Easy Auth never redeems a code, so the
    # provider needs no client secret, and none (nor an app setting naming one) is configured.
    properties = body(auth_settings(templates))["properties"]
    for path, value in walk(properties):
        assert word not in path.lower(), path
        assert not (isinstance(value, str) and word in value.lower()), path
    # Nor does it read any parameter but the client id (the Key Vault URIs among them).
    others = set(templates.file(FUNCTION_APP)["parameters"]) - {CLIENT_ID_PARAMETER}
    for path, value in walk(properties):
        assert not (identifiers(value) & others), path
