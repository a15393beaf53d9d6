"""Deliberate duplicates and reordering for reliability tests, replayable from a seed.

Event Grid promises neither exactly-once nor ordered delivery; chaos mode makes both
failures happen on purpose, so consumers are tested against them.
"""

from __future__ import annotations

import random

from devenv.eventgrid.config import ChaosSettings


class ChaosPlanner:
    """Decides, per (event, subscription), how many copies to deliver and how late each starts."""

    def __init__(self, settings: ChaosSettings) -> None:
        self._settings = settings
        self._random = random.Random(settings.seed)

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def copy_delays(self) -> list[float]:
        """Seconds to hold back each copy: `[0.0]` is one prompt delivery; two entries mean a duplicate."""
        if not self._settings.enabled:
            return [0.0]
        settings, draw = self._settings, self._random
        # A held-back copy lets later events overtake it: that is the reordering.
        first = (
            draw.uniform(settings.max_delay_s / 4, settings.max_delay_s)
            if draw.random() < settings.delay_probability
            else 0.0
        )
        delays = [first]
        if draw.random() < settings.duplicate_probability:
            delays.append(draw.uniform(0.0, settings.max_delay_s))
        return delays
