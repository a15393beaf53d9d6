"""Run one function invocation the way the Python worker does.

The trigger payload arrives as an `azure.functions.meta.Datum`; the binding
registry's converters turn it into the parameter value and turn the return
value (or func.Out values) back into Datums. `async def` functions run on the
host's event loop, plain functions in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions._abc import TraceContext
from azure.functions.meta import Datum

from devenv.host.console_log import current_function, current_invocation
from devenv.host.loader import IndexedFunction, binding_converter

log = logging.getLogger("devenv.host")


class OutValue(func.Out[Any]):
    """The value holder passed for a func.Out[...] parameter."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class LocalTraceContext(TraceContext):
    def __init__(self, trace_parent: str, trace_state: str) -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class LocalContext(func.Context):
    """What a `context` parameter receives: invocation id, function name and directory."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = LocalTraceContext(
            f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00", ""
        )
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._thread_local_storage


@dataclass
class InvocationResult:
    invocation_id: str
    succeeded: bool
    return_value: Datum | None = None
    outputs: dict[str, Datum | None] = field(default_factory=dict)
    error: BaseException | None = None


class FunctionInvoker:
    """Invokes indexed functions; one per host, shared by every trigger."""

    def __init__(self, executor: Executor, *, function_directory: str) -> None:
        self._executor = executor
        self._function_directory = function_directory

    async def invoke(
        self,
        function: IndexedFunction,
        trigger_data: Datum,
        *,
        reason: str,
        trigger_metadata: Mapping[str, Datum] | None = None,
    ) -> InvocationResult:
        invocation_id = str(uuid.uuid4())
        function_token = current_function.set(function.name)
        invocation_token = current_invocation.set(invocation_id)
        started = time.monotonic()
        log.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id
        )
        try:
            try:
                result = await self._run(
                    function, trigger_data, invocation_id, trigger_metadata or {}
                )
            except Exception as error:  # the function's failure is the invocation's outcome
                log.exception(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                    function.name,
                    invocation_id,
                    (time.monotonic() - started) * 1000,
                )
                return InvocationResult(invocation_id, succeeded=False, error=error)
            log.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
                function.name,
                invocation_id,
                (time.monotonic() - started) * 1000,
            )
            return result
        finally:
            current_invocation.reset(invocation_token)
            current_function.reset(function_token)

    async def _run(
        self,
        function: IndexedFunction,
        trigger_data: Datum,
        invocation_id: str,
        trigger_metadata: Mapping[str, Datum],
    ) -> InvocationResult:
        converter = binding_converter(function.trigger_type)
        arguments: dict[str, Any] = {
            function.trigger_parameter: converter.decode(
                trigger_data, trigger_metadata=trigger_metadata
            )
        }
        out_values = {output.name: OutValue() for output in function.outputs}
        arguments.update(out_values)
        if function.context_parameter:
            arguments[function.context_parameter] = LocalContext(
                invocation_id, function.name, self._function_directory
            )
        if function.is_async:
            returned = await function.user_function(**arguments)
        else:
            context = contextvars.copy_context()
            call = functools.partial(function.user_function, **arguments)
            returned = await asyncio.get_running_loop().run_in_executor(
                self._executor, context.run, call
            )
        result = InvocationResult(invocation_id, succeeded=True)
        if function.return_binding is not None and returned is not None:
            result.return_value = binding_converter(function.return_binding).encode(
                returned, expected_type=None
            )
        for output in function.outputs:
            value = out_values[output.name].get()
            result.outputs[output.name] = (
                None
                if value is None
                else binding_converter(output.binding_type).encode(value, expected_type=None)
            )
        return result
