"""The per-registry request budget: never more than the budget in any 60 seconds, and all of it
used while requests wait (the old token bucket let twice the budget out in its first minute)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.service.budget import WINDOW_S, RequestBudget


def spent_at(budget: RequestBudget, moments: list[float]) -> list[float]:
    return [at for at in moments if budget.take(at)]


def most_in_any_window(moments: list[float]) -> int:
    return max(
        (sum(1 for other in moments if start <= other < start + WINDOW_S) for start in moments),
        default=0,
    )


def test_a_backlog_uses_the_whole_budget_and_never_more_in_any_minute() -> None:
    budget = RequestBudget(per_minute=100)
    asked = [i * 0.1 for i in range(3000)]  # ten requests a second for five minutes
    spent = spent_at(budget, asked)
    assert most_in_any_window(spent) == 100
    # Five minutes of backlog: five minutes' budget spent.
    assert len(spent) == 500
    assert budget.left(asked[-1]) == 0


def test_what_was_spent_a_minute_ago_is_available_again() -> None:
    budget = RequestBudget(per_minute=2)
    assert spent_at(budget, [0.0, 1.0, 2.0]) == [0.0, 1.0]
    assert budget.take(59.9) is False
    assert budget.take(60.0) is True  # the request at 0.0 left the window
    assert budget.left(60.0) == 0


@given(
    per_minute=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), max_size=200),
)
def test_no_sixty_seconds_ever_see_more_than_the_budget(per_minute: int, gaps: list[float]) -> None:
    moments: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        moments.append(now)
    spent = spent_at(RequestBudget(per_minute=per_minute), moments)
    assert most_in_any_window(spent) <= per_minute
