"""HTTP trigger route templates in the ASP.NET syntax the Functions host uses.

Supports literal segments (matched case-insensitively), `{name}`, `{name?}`,
`{name=default}`, catch-all `{*rest}` and inline constraints such as
`{id:int}` or `{code:regex(^a+$)}`. More specific templates win, as in ASP.NET.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from devenv.host.settings import HostConfigurationError

_PARAMETER = re.compile(r"\{([^{}]*(?:\([^()]*\))?[^{}]*)\}")
_CONSTRAINT = re.compile(r"^(?P<name>[a-zA-Z]+)(?:\((?P<args>.*)\))?$")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _integer_in(bounds: tuple[int, int]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return re.fullmatch(r"-?\d+", value) is not None and bounds[0] <= int(value) <= bounds[1]

    return check


def _parses(parser: Callable[[str], object]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            parser(value)
        except ValueError:
            return False
        return True

    return check


def _number_check(args: str, test: Callable[[float, list[float]], bool]) -> Callable[[str], bool]:
    bounds = [float(part) for part in args.split(",")]

    def check(value: str) -> bool:
        try:
            return test(float(value), bounds)
        except ValueError:
            return False

    return check


def _length_check(args: str) -> Callable[[str], bool]:
    bounds = [int(part) for part in args.split(",")]
    if len(bounds) == 1:
        return lambda value: len(value) == bounds[0]
    return lambda value: bounds[0] <= len(value) <= bounds[1]


def _constraint(text: str, template: str) -> Callable[[str], bool]:
    match = _CONSTRAINT.match(text)
    if match is None:
        raise HostConfigurationError(f"route {template!r}: cannot read constraint {text!r}")
    name, args = match["name"].lower(), match["args"] or ""
    simple: dict[str, Callable[[str], bool]] = {
        "int": _integer_in(_INT32),
        "long": _integer_in(_INT64),
        "bool": lambda value: value.lower() in ("true", "false"),
        "guid": _parses(uuid.UUID),
        "alpha": lambda value: re.fullmatch(r"[a-zA-Z]+", value) is not None,
        "float": _parses(float),
        "double": _parses(float),
        "decimal": _parses(float),
        "datetime": _parses(datetime.fromisoformat),
    }
    try:
        if name in simple:
            return simple[name]
        if name == "minlength":
            return lambda value: len(value) >= int(args)
        if name == "maxlength":
            return lambda value: len(value) <= int(args)
        if name == "length":
            return _length_check(args)
        if name == "min":
            return _number_check(args, lambda number, bounds: number >= bounds[0])
        if name == "max":
            return _number_check(args, lambda number, bounds: number <= bounds[0])
        if name == "range":
            return _number_check(args, lambda number, bounds: bounds[0] <= number <= bounds[1])
        if name == "regex":
            pattern = re.compile(args, re.IGNORECASE)
            return lambda value: pattern.search(value) is not None
    except ValueError as error:
        raise HostConfigurationError(
            f"route {template!r}: bad constraint {text!r}: {error}"
        ) from None
    raise HostConfigurationError(
        f"route {template!r}: the constraint reference {name!r} could not be resolved"
    )


@dataclass(frozen=True)
class RouteParameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    constraints: tuple[str, ...]
    checks: tuple[Callable[[str], bool], ...]


@dataclass
class RouteTemplate:
    """One function's route, compiled to a regular expression over the request path."""

    function_name: str
    template: str
    methods: frozenset[str] | None
    pattern: re.Pattern[str] = field(repr=False)
    parameters: tuple[RouteParameter, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, parameter in enumerate(self.parameters):
            value = found.group(f"p{index}")
            if value is None or value == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not (parameter.optional or parameter.catch_all):
                    return None
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def _parse_parameter(text: str, template: str) -> RouteParameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default: str | None = None
    optional = False
    # Constraints come after the first ':'; a default after '='; '?' at the end.
    name_part, *constraint_parts = _split_constraints(text)
    if constraint_parts and constraint_parts[-1].endswith("?"):
        constraint_parts[-1] = constraint_parts[-1][:-1]
        optional = True
    if name_part.endswith("?"):
        name_part, optional = name_part[:-1], True
    if "=" in name_part:
        name_part, default = name_part.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name_part):
        raise HostConfigurationError(f"route {template!r}: bad parameter name {name_part!r}")
    checks = tuple(_constraint(part, template) for part in constraint_parts)
    constraints = tuple(part.lower() for part in constraint_parts)
    return RouteParameter(name_part, optional, catch_all, default, constraints, checks)


def _split_constraints(text: str) -> list[str]:
    # Split on ':' outside parentheses, so regex(a:b) stays whole.
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def compile_route(
    function_name: str, route: str, methods: Iterable[str] | None, *, prefix: str
) -> RouteTemplate:
    """Compile `route` (as written on the trigger) under `prefix` (host.json routePrefix)."""
    template = route.strip("/")
    segments = [part for part in (prefix.strip("/"), template) if part]
    full = "/".join(segments)
    regex = "^"
    parameters: list[RouteParameter] = []
    precedence: list[int] = []
    for segment in full.split("/") if full else []:
        pieces = _PARAMETER.split(segment)
        # pieces alternates literal, parameter, literal, ...
        literal_only = len(pieces) == 1
        if literal_only:
            regex += "/" + re.escape(segment)
            precedence.append(0)
            continue
        segment_regex = ""
        lone = len(pieces) == 3 and pieces[0] == "" and pieces[2] == ""
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                segment_regex += re.escape(piece)
                continue
            parameter = _parse_parameter(piece, route)
            group = f"p{len(parameters)}"
            parameters.append(parameter)
            body = ".*" if parameter.catch_all else "[^/]+" if lone else "[^/]+?"
            segment_regex += f"(?P<{group}>{body})"
            precedence.append(
                4
                if parameter.catch_all
                else 3
                if parameter.optional
                else 1
                if parameter.checks
                else 2
            )
        skippable = lone and (
            parameters[-1].optional
            or parameters[-1].catch_all
            or parameters[-1].default is not None
        )
        regex += f"(?:/{segment_regex})?" if skippable else f"/{segment_regex}"
    regex += "/?$"
    allowed = None if methods is None else frozenset(method.upper() for method in methods)
    return RouteTemplate(
        function_name=function_name,
        template=full,
        methods=allowed or None,
        pattern=re.compile(regex, re.IGNORECASE),
        parameters=tuple(parameters),
        precedence=tuple(precedence),
    )


class MethodNotAllowed(Exception):
    """The path matches a route, but none that accepts the method."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


@dataclass
class RouteTable:
    """All HTTP routes of the app, most specific first."""

    routes: list[RouteTemplate]

    def __post_init__(self) -> None:
        self.routes.sort(key=lambda route: (route.precedence, route.template.lower()))
        seen: dict[str, list[RouteTemplate]] = {}
        for route in self.routes:
            constraints = [parameter.constraints for parameter in route.parameters]
            key = f"{route.pattern.pattern.lower()} {constraints}"
            for other in seen.get(key, []):
                if route.methods is None or other.methods is None or route.methods & other.methods:
                    raise HostConfigurationError(
                        f"functions {other.function_name!r} and {route.function_name!r} both "
                        f"serve route {route.template!r} for the same methods"
                    )
            seen.setdefault(key, []).append(route)

    def resolve(self, path: str, method: str) -> tuple[RouteTemplate, dict[str, str]] | None:
        """The route for `path` and `method`; raises MethodNotAllowed, None when nothing matches."""
        allowed: set[str] = set()
        for route in self.routes:
            values = route.match(path)
            if values is None:
                continue
            if route.allows(method):
                return route, values
            allowed.update(route.methods or ())
        if allowed:
            raise MethodNotAllowed(sorted(allowed))
        return None
