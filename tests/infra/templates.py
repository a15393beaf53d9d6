"""Loads infra/'s Bicep templates through pycep-parser (in the infra venv) and reads them.

The parsed form is pycep's JSON: resources, modules, variables and parameters by symbolic name,
with expressions as nested {"function": ...} / {"operator": ...} nodes and identifiers as plain
strings. `body` strips loops and conditions; `expression_text` renders an expression for asserts.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.paths import REPO_ROOT

INFRA_DIR = REPO_ROOT / "infra"
INFRA_VENV = REPO_ROOT / ".georollout" / "infra-venv"
INFRA_PYTHON = INFRA_VENV / "bin" / "python"
CHECKOV = INFRA_VENV / "bin" / "checkov"
BICEP_TO_JSON = Path(__file__).with_name("bicep_to_json.py")
MISSING_TOOLS = "the infra tools are not installed: run `make infra-tools`"


@dataclass(frozen=True)
class Templates:
    """Every Bicep file under infra/, parsed, keyed by its path relative to infra/."""

    parsed: dict[str, dict[str, Any]]

    def file(self, relative_path: str) -> dict[str, Any]:
        return self.parsed[relative_path]

    def resource(self, relative_path: str, symbol: str) -> dict[str, Any]:
        return self.parsed[relative_path]["resources"][symbol]  # type: ignore[no-any-return]

    def module(self, relative_path: str, symbol: str) -> dict[str, Any]:
        return self.parsed[relative_path]["modules"][symbol]  # type: ignore[no-any-return]


def bicep_files() -> list[Path]:
    """Every .bicep file under infra/, sorted."""
    return sorted(INFRA_DIR.rglob("*.bicep"))


def load_templates() -> Templates:
    """Parse every Bicep file with the infra venv's pycep-parser (the one checkov uses)."""
    assert INFRA_PYTHON.exists(), MISSING_TOOLS
    paths = [str(path) for path in bicep_files()]
    completed = subprocess.run(
        [str(INFRA_PYTHON), str(BICEP_TO_JSON), *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    raw: dict[str, dict[str, Any]] = json.loads(completed.stdout)
    return Templates({str(Path(path).relative_to(INFRA_DIR)): doc for path, doc in raw.items()})


def body(node: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's config with any loop (`[for ...]`) or condition (`if`) removed."""
    config: dict[str, Any] = node["config"]
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def loop_of(node: dict[str, Any]) -> dict[str, Any] | None:
    """The loop (`[for x in xs]`) a resource, module or variable value iterates, if any."""
    config = node.get("config", node.get("value"))
    if isinstance(config, dict) and "loop_type" in config:
        return config["loop_type"]  # type: ignore[no-any-return]
    return None


def expression_text(node: Any) -> str:
    """Render a pycep expression compactly: `functionApp.outputs.principalId`, `f(a, b)`."""
    if isinstance(node, dict) and "operator" in node:
        operator = node["operator"]
        if operator["type"] == "function_accessor":
            operands_by_name = dict(operator["operands"])
            target = expression_text(operands_by_name.pop("operand_1"))
            name = operands_by_name.pop("func_name")
            arguments = [expression_text(value) for value in operands_by_name.values() if value]
            return f"{target}.{name}({', '.join(arguments)})"
        operands = [expression_text(value) for value in operator["operands"].values()]
        if operator["type"] == "property_accessor":
            return ".".join(operands)
        if operator["type"] == "index_accessor":
            return f"{operands[0]}[{operands[1]}]"
        return f"{operator['type']}({', '.join(operands)})"
    if isinstance(node, dict) and "function" in node:
        function = node["function"]
        arguments = [expression_text(value) for value in function["parameters"].values()]
        return f"{function['type']}({', '.join(arguments)})"
    return json.dumps(node) if not isinstance(node, str) else node


def decorator(parameter: dict[str, Any], kind: str) -> Any:
    """The argument of a parameter's decorator of `kind`, None when it has none."""
    for entry in parameter["decorators"]:
        if entry["type"] == kind:
            return entry.get("argument", True)
    return None
