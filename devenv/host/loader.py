"""Index a Python v2-model function app the way the Functions host and worker do.

Imports `function_app.py`, finds its one `func.FunctionApp`, and reads every
function's trigger and bindings through the decorator API. What Azure would
refuse at indexing time is refused here too, all problems reported together.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import Binding, BindingDirection, Trigger
from azure.functions.decorators.function_app import Function, FunctionRegister

from devenv.host.settings import HostConfigurationError

SCRIPT_MODULE = "function_app"
HTTP_TRIGGER = "httpTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
TIMER_TRIGGER = "timerTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, EVENT_GRID_TRIGGER, TIMER_TRIGGER)
SUPPORTED_OUTPUTS = ("http",)
RETURN_BINDING = "$return"
# The worker passes a func.Context to a parameter of this name when it is not a binding.
CONTEXT_PARAMETER = "context"

_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,127}$", re.IGNORECASE)
_BINDING_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9]{0,127}$")


@dataclass(frozen=True)
class OutputBinding:
    name: str
    binding_type: str


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the host runs it: its trigger, parameters and outputs."""

    name: str
    function: Function
    user_function: Callable[..., Any]
    trigger: Trigger
    trigger_parameter: str
    outputs: tuple[OutputBinding, ...]
    return_binding: str | None
    context_parameter: str | None

    @property
    def trigger_type(self) -> str:
        return str(self.trigger.type)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    def trigger_setting(self, name: str) -> Any:
        return getattr(self.trigger, name, None)


def import_function_app(app_dir: Path) -> ModuleType:
    """Import app_dir/function_app.py as the worker does: app_dir on sys.path and as cwd."""
    script = app_dir / f"{SCRIPT_MODULE}.py"
    if not script.is_file():
        raise HostConfigurationError(f"{script} not found: a v2-model app needs function_app.py")
    resolved = str(app_dir.resolve())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)
    os.chdir(resolved)
    return importlib.import_module(SCRIPT_MODULE)


def find_function_app(module: ModuleType) -> FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if not apps:
        raise HostConfigurationError(
            f"no func.FunctionApp instance at the top level of {module.__file__}"
        )
    if len(apps) > 1:
        raise HostConfigurationError(f"more than one FunctionApp instance in {module.__file__}")
    return apps[0]


def binding_converter(binding_type: str) -> Any:
    """The converter the worker uses for a binding or trigger type (None if there is none)."""
    registry = func.get_binding_registry()  # type: ignore[no-untyped-call]
    return registry.get(binding_type)


def _annotations(user_function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(user_function)
    except Exception:  # unresolvable string annotations: fall back to raw ones
        return dict(getattr(user_function, "__annotations__", {}))


def _is_out_annotation(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, func.Out)


def _check_trigger_annotation(
    name: str, trigger: Trigger, annotation: Any, problems: list[str]
) -> None:
    converter = binding_converter(str(trigger.type))
    if converter is None or annotation is inspect.Parameter.empty:
        return
    try:
        accepted = isinstance(annotation, type) and converter.check_input_type_annotation(
            annotation
        )
    except TypeError:
        accepted = False
    if not accepted:
        problems.append(
            f"function {name!r}: parameter {trigger.name!r} is annotated {annotation!r}, "
            f"which the {trigger.type} binding cannot provide"
        )


def _index_function(function: Function, problems: list[str]) -> IndexedFunction | None:
    name = function.get_function_name() or ""
    start = len(problems)
    if not _FUNCTION_NAME.match(name) or name.lower() == "host":
        problems.append(
            f"{name!r} is not a valid function name: it must match ^[a-z][a-z0-9_-]{{0,127}}$ "
            "(case-insensitive) and must not be 'host'"
        )
    trigger = function.get_trigger()
    if trigger is None:
        problems.append(f"function {name!r} has no trigger")
        return None
    if trigger.type not in SUPPORTED_TRIGGERS:
        problems.append(
            f"function {name!r}: trigger type {trigger.type!r} is not supported by the local host "
            f"(supported: {', '.join(SUPPORTED_TRIGGERS)})"
        )
    user_function = function.get_user_function()
    signature = inspect.signature(user_function)
    annotations = _annotations(user_function)
    bindings: list[Binding] = function.get_bindings()
    outputs: list[OutputBinding] = []
    return_binding: str | None = None
    binding_names: set[str] = set()
    for binding in bindings:
        is_out = binding.direction == BindingDirection.OUT.value
        if binding.name == RETURN_BINDING:
            if not is_out:
                problems.append(f"function {name!r}: {RETURN_BINDING} must be an output binding")
            return_binding = str(binding.type)
        elif not _BINDING_NAME.match(binding.name):
            problems.append(
                f"function {name!r}: the binding name {binding.name!r} is invalid: binding names "
                "must match ^[a-zA-Z][a-zA-Z0-9]{0,127}$ (letters and digits, no underscores), "
                "and the Python parameter must have the same name"
            )
        elif binding.name in binding_names:
            problems.append(f"function {name!r}: binding name {binding.name!r} is used twice")
        binding_names.add(binding.name)
        if is_out and binding.type not in SUPPORTED_OUTPUTS:
            problems.append(
                f"function {name!r}: output binding type {binding.type!r} is not supported by the "
                f"local host (supported: {', '.join(SUPPORTED_OUTPUTS)})"
            )
        if is_out and binding.name != RETURN_BINDING:
            outputs.append(OutputBinding(binding.name, str(binding.type)))
            annotation = annotations.get(binding.name, inspect.Parameter.empty)
            if annotation is not inspect.Parameter.empty and not _is_out_annotation(annotation):
                problems.append(
                    f"function {name!r}: output binding {binding.name!r} must be annotated func.Out[...]"
                )
    parameters = list(signature.parameters)
    declared = binding_names - {RETURN_BINDING}
    missing = sorted(declared - set(parameters))
    if missing:
        problems.append(
            f"function {name!r}: bindings {missing} have no Python parameter of the same name "
            f"(parameters: {parameters})"
        )
    extra = sorted(set(parameters) - declared - {CONTEXT_PARAMETER})
    if extra:
        problems.append(
            f"function {name!r}: Python parameters {extra} are not bindings "
            f"(bindings: {sorted(declared)})"
        )
    _check_trigger_annotation(
        name, trigger, annotations.get(trigger.name, inspect.Parameter.empty), problems
    )
    if len(problems) > start:
        return None
    context_parameter = (
        CONTEXT_PARAMETER
        if CONTEXT_PARAMETER in parameters and CONTEXT_PARAMETER not in declared
        else None
    )
    return IndexedFunction(
        name=name,
        function=function,
        user_function=user_function,
        trigger=trigger,
        trigger_parameter=trigger.name,
        outputs=tuple(outputs),
        return_binding=return_binding,
        context_parameter=context_parameter,
    )


def index_functions(app: FunctionRegister) -> list[IndexedFunction]:
    """Every function of `app`, validated; raises HostConfigurationError listing all problems."""
    problems: list[str] = []
    try:
        functions = app.get_functions()
    except ValueError as error:
        raise HostConfigurationError(f"the function app cannot be indexed: {error}") from None
    indexed: list[IndexedFunction] = []
    seen: dict[str, str] = {}
    for function in functions:
        result = _index_function(function, problems)
        if result is None:
            continue
        if result.name.lower() in seen:
            problems.append(f"two functions are named {result.name!r} (names are case-insensitive)")
        seen[result.name.lower()] = result.name
        indexed.append(result)
    if problems:
        raise HostConfigurationError(
            "the function app is invalid:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )
    return indexed


def load_function_app(app_dir: Path) -> list[IndexedFunction]:
    """Import app_dir/function_app.py and index its functions."""
    module = import_function_app(app_dir)
    return index_functions(find_function_app(module))
