"""`wait`: poll one rollout until it has ended or the time is up, reporting what changed.

A rollout the API does not know yet is no error until the deadline: the notice may still be
on its way (Event Grid retries, a registry webhook that lags the push). Unreachable servers
and 5xx/429 answers are reported and asked again too: a pipeline should not fail because
the function app restarted during a deployment. Other refusals (401, 400) end the wait.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from georollout_cli.api import DEFAULT_REQUEST_TIMEOUT_S, ApiClient, ApiError, ApiUnreachable
from georollout_cli.durations import format_duration
from georollout_cli.images import RolloutRef
from georollout_cli.lookup import direct_id, find_rollout
from georollout_cli.progress import Snapshot, changes, verdict


class WaitOutcome(enum.IntEnum):
    """How a wait ends; the value is the command's exit status (124 as GNU timeout has it)."""

    LIVE = 0
    ENDED = 1
    TIMED_OUT = 124


@dataclass(frozen=True, slots=True)
class WaitResult:
    outcome: WaitOutcome
    reason: str
    document: Mapping[str, Any] | None


class ProgressSink(Protocol):
    """Where `wait` reports: changes of the rollout, and notes about the waiting itself."""

    def changed(self, document: Mapping[str, Any], lines: Sequence[str]) -> None: ...

    def note(self, text: str) -> None: ...


def wait_for_rollout(
    client: ApiClient,
    ref: RolloutRef,
    *,
    timeout: float,
    interval: float,
    sink: ProgressSink,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Ask for the rollout every `interval` seconds until it is live or has ended otherwise,
    or `timeout` seconds have passed (it is asked at least once)."""
    deadline = monotonic() + timeout
    rollout_id = direct_id(ref)
    previous: Snapshot | None = None
    document: Mapping[str, Any] | None = None
    last_note: list[str] = []

    def note_once(text: str) -> None:
        # The same note on every poll would bury the log; say it again only after another.
        if last_note != [text]:
            sink.note(text)
            last_note[:] = [text]

    while True:
        request_timeout = max(1.0, min(DEFAULT_REQUEST_TIMEOUT_S, deadline - monotonic()))
        try:
            found = (
                client.get_rollout(rollout_id, timeout=request_timeout)
                if rollout_id is not None
                else find_rollout(client, ref, timeout=request_timeout)
            )
        except ApiUnreachable as error:
            note_once(f"cannot reach the API, asking again: {error}")
        except ApiError as error:
            if not error.transient:
                raise
            note_once(f"the API is busy or failing, asking again: {error}")
        else:
            if found is None:
                note_once(f"no rollout of {ref.describe()} recorded yet; asking again")
            else:
                document = found
                # A tag names a rollout once: from then on, follow that rollout by its id.
                rollout_id = rollout_id or str(found["id"])
                snapshot = Snapshot.of(found)
                lines = changes(previous, snapshot)
                if lines:
                    sink.changed(found, lines)
                previous = snapshot
                ended = verdict(found)
                if ended is not None:
                    outcome = WaitOutcome.LIVE if ended.live else WaitOutcome.ENDED
                    return WaitResult(outcome, ended.reason, found)
        remaining = deadline - monotonic()
        if remaining <= 0:
            where = f"still {document['state']}" if document else "never recorded"
            return WaitResult(
                WaitOutcome.TIMED_OUT,
                f"{ref.describe()}: {where} after {format_duration(timeout)}",
                document,
            )
        sleep(min(interval, remaining))
