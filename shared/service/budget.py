"""A per-registry request budget for one probe tick (a token bucket refilled per minute).

ACR meters read operations per registry; georollout spends only a configured
share of them, so a burst of pushes never starves the registry's other clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestBudget:
    """Tokens per minute; `take()` spends one if any is left at `now` (monotonic seconds)."""

    per_minute: int
    tokens: float = field(init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.per_minute)

    def take(self, now: float) -> bool:
        if self._last is not None:
            self.tokens = min(
                float(self.per_minute), self.tokens + (now - self._last) * self.per_minute / 60.0
            )
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
