"""A per-registry request budget: at most N requests in any 60 seconds (a sliding window).

ACR meters read operations per registry (every replica's regional endpoint is
the same registry); georollout spends only a configured share of them, so a
burst of pushes never starves the registry's other clients. A token bucket that
starts full lets a minute's capacity out at once and then refills, so a busy
minute could see up to twice the budget; the window never lets more than the
budget out in any 60 seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class RequestBudget:
    """`take(now)` spends one request if fewer than `per_minute` were spent in the 60 s
    before `now` (monotonic seconds)."""

    per_minute: int
    _spent: deque[float] = field(default_factory=deque, init=False)

    def take(self, now: float) -> bool:
        while self._spent and self._spent[0] <= now - WINDOW_S:
            self._spent.popleft()
        if len(self._spent) >= self.per_minute:
            return False
        self._spent.append(now)
        return True

    def left(self, now: float) -> int:
        """How many requests may go out at `now`."""
        return self.per_minute - sum(1 for at in self._spent if at > now - WINDOW_S)
