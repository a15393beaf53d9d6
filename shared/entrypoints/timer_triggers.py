"""The probe timer: one tick of probes and reconcile steps for every due rollout."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.service.runtime import services
from shared.service.tick import run_tick

log = logging.getLogger("georollout.timer")
# Leave the tail of the interval free, so one tick ends before the next is due.
_SHARE_OF_INTERVAL = 0.8
_DEFAULT_INTERVAL_S = 30.0


async def probe_replicas(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("probe tick is running late")
    app = await services()
    await run_tick(app, time_budget_s=_interval_s(app.config.probe.schedule) * _SHARE_OF_INTERVAL)


def _interval_s(schedule: str) -> float:
    """The period of a `*/N` seconds NCRONTAB schedule (or of a TimeSpan), else the default."""
    fields = schedule.split()
    if len(fields) == 6 and fields[0].startswith("*/") and all(f == "*" for f in fields[1:]):
        return float(fields[0][2:])
    if (
        len(fields) == 6
        and fields[0] == "0"
        and fields[1].startswith("*/")
        and all(f == "*" for f in fields[2:])
    ):
        return float(fields[1][2:]) * 60
    if ":" in schedule and len(fields) == 1:
        hours, minutes, seconds = (float(part) for part in schedule.split(":"))
        return hours * 3600 + minutes * 60 + seconds
    return _DEFAULT_INTERVAL_S
