"""Long-running ARM operations that georollout follows itself: no SDK poller thread behind them.

azure-core's `LROPoller` starts a thread that polls the operation until it ends
(at ARM's Retry-After pace) whenever its polling method has not finished yet,
and azure-ai-ml's polling class prints a dot to stdout at each of those polls.
georollout keeps only the operation's URL and ARM's Retry-After, and reads the
operation again when its step is due (`FoundryDeployer`): the thread doubled
the reads ARM counts against the subscription, kept a thread alive per
operation in flight, and wrote its dots into the host's log.

`polling=False` would say so, but azure-ai-ml passes a polling method of its
own for deployments, so it cannot be given. Instead, a poller started inside
`without_poller_thread` returns from its run at once: the thread ends as it
starts, and the poller still holds the initial response and the operation's URL.
Pollers started anywhere else poll as the SDK means them to.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from azure.mgmt.core.polling.arm_polling import ARMPolling

T = TypeVar("T")

_CALLER_POLLS: ContextVar[bool] = ContextVar("georollout_caller_polls", default=False)
_INSTALLED = "_georollout_caller_polls_installed"
_MARK = "_georollout_caller_polls"


def without_poller_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn` (a `begin_*` of azure-ai-ml, in the calling thread): the pollers it
    starts do not poll."""
    token = _CALLER_POLLS.set(True)
    try:
        return fn(*args, **kwargs)
    finally:
        _CALLER_POLLS.reset(token)


def _install() -> None:
    """Wrap ARMPolling (azure-ai-ml's polling class derives from it) once per process, on
    import, under the import lock. `initialize` runs in the thread that starts the
    operation, before `LROPoller` decides to start its thread, so it can note whether
    the caller polls; `run` is what that thread runs."""
    if getattr(ARMPolling, _INSTALLED, False):
        return
    initialize, run = ARMPolling.initialize, ARMPolling.run

    def initialize_and_note(self: ARMPolling, *args: Any, **kwargs: Any) -> None:
        initialize(self, *args, **kwargs)
        setattr(self, _MARK, _CALLER_POLLS.get())

    def run_unless_the_caller_polls(self: ARMPolling) -> None:
        if not getattr(self, _MARK, False):
            run(self)

    # setattr: the type checker rightly refuses assigning to a method.
    setattr(ARMPolling, "initialize", initialize_and_note)  # noqa: B010
    setattr(ARMPolling, "run", run_unless_the_caller_polls)  # noqa: B010
    setattr(ARMPolling, _INSTALLED, True)


_install()
