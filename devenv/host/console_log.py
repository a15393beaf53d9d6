"""Console logging for the local host: every line names the function it came from.

The current function and invocation id live in context variables, set around
each invocation; sync functions run in threads with a copy of that context.
"""

from __future__ import annotations

import contextvars
import logging
import sys

current_function: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_function", default="host"
)
current_invocation: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_invocation", default=""
)


class FunctionContextFilter(logging.Filter):
    """Stamps each record with the function and invocation it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.function_name = current_function.get()
        invocation = current_invocation.get()
        record.invocation = f" {invocation[:8]}" if invocation else ""
        return True


LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(function_name)s%(invocation)s] %(name)s: %(message)s"


def configure_console_logging(level: int = logging.INFO) -> None:
    """Send every logger's records to stdout with the function name on each line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(FunctionContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Per-request lines come from our own access log, with the duration.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
