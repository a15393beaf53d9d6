"""App settings as the Functions host sees them: local.settings.json, host.json, `%NAME%`.

Values from local.settings.json go into the process environment unless the
environment already sets them (the Core Tools rule). Only names are logged:
values are often secrets.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("devenv.host")

_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


class HostConfigurationError(RuntimeError):
    """The app directory cannot be hosted as it is; the message says why."""


@dataclass(frozen=True)
class AppliedSettings:
    taken: tuple[str, ...]
    overridden: tuple[str, ...]


def _setting_text(name: str, value: object, source: Path) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise HostConfigurationError(
        f"{source}: Values.{name} must be a string, not {type(value).__name__}"
    )


def apply_local_settings(
    app_dir: Path, environ: MutableMapping[str, str] | None = None
) -> AppliedSettings:
    """Copy `Values` of app_dir/local.settings.json into `environ` (os.environ by default)."""
    target = os.environ if environ is None else environ
    path = app_dir / "local.settings.json"
    if not path.is_file():
        log.info("No %s; using the process environment only", path.name)
        return AppliedSettings((), ())
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise HostConfigurationError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise HostConfigurationError(f"{path} must hold a JSON object")
    if document.get("IsEncrypted") is True:
        raise HostConfigurationError(
            f"{path} is encrypted; the local host reads plain settings only"
        )
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise HostConfigurationError(f"{path}: Values must be an object")
    taken: list[str] = []
    overridden: list[str] = []
    for name, raw in values.items():
        text = _setting_text(name, raw, path)
        if text is None:
            continue
        if name in target:
            overridden.append(name)
        else:
            target[name] = text
            taken.append(name)
    log.info("App settings from %s: %s", path.name, ", ".join(taken) or "(none)")
    if overridden:
        log.info("Already set in the environment (environment wins): %s", ", ".join(overridden))
    return AppliedSettings(tuple(taken), tuple(overridden))


def resolve_setting_references(text: str, environ: MutableMapping[str, str] | None = None) -> str:
    """Replace each `%NAME%` with that app setting, as Azure does in binding expressions."""
    source = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise HostConfigurationError(
                f"'%{name}%' does not resolve to a value: app setting {name} is not set"
            )
        return source[name]

    return _SETTING_REFERENCE.sub(lookup, text)


def http_route_prefix(app_dir: Path) -> str:
    """host.json `extensions.http.routePrefix` (default `api`), without slashes."""
    path = app_dir / "host.json"
    if not path.is_file():
        return "api"
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise HostConfigurationError(f"{path} is not valid JSON: {error}") from None
    prefix = document.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise HostConfigurationError(f"{path}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")
