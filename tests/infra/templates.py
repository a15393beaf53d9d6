"""Loads infra/'s Bicep templates through pycep-parser (in the infra venv) and reads them.

The parsed form is pycep's JSON: resources, modules, variables and parameters by symbolic name,
with expressions as nested {"function": ...} / {"operator": ...} nodes and identifiers as plain
strings. `body` strips loops and conditions; `expression_text` renders an expression for asserts.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
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


class UnsupportedExpression(ValueError):
    """An expression outside the small subset `evaluate` knows (it never guesses)."""


def evaluate(node: Any, scope: dict[str, str], variables: dict[str, Any]) -> Any:
    """Evaluate a pycep expression as ARM would, for the subset the secret templates and the
    resource conditions use: parameters (their values in `scope`), the file's `variables`,
    `startsWith`, `empty`, `!`, the ternary operator, and strings with `${...}` parts calling
    `base64()` or `concat()`. Anything else raises UnsupportedExpression, so a template that
    outgrows the subset fails loudly."""
    if isinstance(node, str):
        if node in scope:
            return scope[node]
        if node in variables:
            return evaluate(variables[node]["value"], scope, variables)
        # pycep keeps an interpolated string as its raw body (without the quotes).
        return _StringParser(node, scope, variables).string_body(closing=None)
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "conditional":
        operands = node["operator"]["operands"]
        taken = evaluate(operands["condition"], scope, variables)
        return evaluate(operands["true_value" if taken else "false_value"], scope, variables)
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "not":
        operand = evaluate(node["operator"]["operands"]["bool_value"], scope, variables)
        if not isinstance(operand, bool):
            raise UnsupportedExpression(f"! applied to {operand!r}")
        return not operand
    if isinstance(node, dict) and node.get("function", {}).get("type") == "empty":
        item = evaluate(node["function"]["parameters"]["item_to_test"], scope, variables)
        if not isinstance(item, str | list | dict):
            raise UnsupportedExpression(f"empty() of {item!r}")
        return len(item) == 0
    if isinstance(node, dict) and node.get("function", {}).get("type") == "starts_with":
        parameters = node["function"]["parameters"]
        text = evaluate(parameters["string_to_search"], scope, variables)
        return text.startswith(evaluate(parameters["string_to_find"], scope, variables))
    raise UnsupportedExpression(json.dumps(node))


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
# ARM's base64() encodes the string's UTF-8 bytes, standard alphabet, with padding.
_FUNCTIONS: dict[str, Callable[..., str]] = {
    "base64": lambda value: base64.b64encode(value.encode()).decode("ascii"),
    "concat": lambda *values: "".join(values),
}


class _StringParser:
    """Recursive descent over a Bicep string body and the expressions inside `${...}`."""

    def __init__(self, text: str, scope: dict[str, str], variables: dict[str, Any]) -> None:
        self.text, self.position = text, 0
        self.scope, self.variables = scope, variables

    def string_body(self, *, closing: str | None) -> str:
        """Literal text and `${...}` parts up to `closing` (a quote) or the end of the text."""
        out: list[str] = []
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == closing:
                return "".join(out)
            if char == "\\" and self.position + 1 < len(self.text):
                escaped = self.text[self.position + 1]
                out.append(_ESCAPES.get(escaped, escaped))
                self.position += 2
            elif self.text.startswith("${", self.position):
                self.position += 2
                out.append(str(self.expression()))
                self._expect("}")
            else:
                out.append(char)
                self.position += 1
        if closing is not None:
            raise UnsupportedExpression(f"unterminated string in {self.text!r}")
        return "".join(out)

    def expression(self) -> Any:
        self._skip_spaces()
        if self.text.startswith("'", self.position):
            self.position += 1
            value = self.string_body(closing="'")
            self._expect("'")
            return value
        start = self.position
        while self.position < len(self.text) and (
            self.text[self.position].isalnum() or self.text[self.position] == "_"
        ):
            self.position += 1
        name = self.text[start : self.position]
        if not name:
            raise UnsupportedExpression(f"expected an expression at {self.text[start:]!r}")
        self._skip_spaces()
        if not self.text.startswith("(", self.position):
            return evaluate(name, self.scope, self.variables)
        self.position += 1
        arguments: list[Any] = []
        self._skip_spaces()
        while not self.text.startswith(")", self.position):
            arguments.append(self.expression())
            self._skip_spaces()
            if self.text.startswith(",", self.position):
                self.position += 1
        self._expect(")")
        if name not in _FUNCTIONS:
            raise UnsupportedExpression(f"function {name}()")
        return _FUNCTIONS[name](*arguments)

    def _skip_spaces(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def _expect(self, token: str) -> None:
        self._skip_spaces()
        if not self.text.startswith(token, self.position):
            raise UnsupportedExpression(f"expected {token!r} at {self.text[self.position :]!r}")
        self.position += len(token)
