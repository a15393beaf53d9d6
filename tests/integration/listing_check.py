"""Whether a store's listings say what its rollouts say: every listing the API offers
(all, per repository, per state, per both) against the rollout entities themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.adapters.table_store import RolloutStore, StoredRollout


async def _listed(store: RolloutStore, **query: Any) -> list[StoredRollout]:
    found: list[StoredRollout] = []
    continuation: str | None = None
    while True:
        page, continuation = await store.list(limit=1000, continuation=continuation, **query)
        found += page
        if continuation is None:
            return found


Render = Callable[[dict[str, Any]], dict[str, Any]]


def _seen(rec: StoredRollout, render: Render | None) -> tuple[Any, ...]:
    """What a listing shows of `rec`: the document, when the writer rendered one."""
    if rec.listing is not None:
        shown: Any = rec.listing
    elif render is not None and rec.record:
        shown = render(rec.record)
    else:
        shown = rec.record
    return (rec.id, rec.repository, rec.state, rec.created_at, shown)


async def listings_disagree(store: RolloutStore, render: Render | None = None) -> list[str]:
    """What each listing gets wrong (empty when every listing equals the rollouts, newest
    first): a stale copy, a rollout missing or listed under a filter it does not match.
    `render`: the document a rollout's record stands for; each listed document must
    equal it (else listed documents are compared with the stored ones)."""
    everything = await _listed(store)
    truths: list[StoredRollout] = []
    for listed in everything:
        truth = await store.get(listed.id, with_listing=True)
        if truth is not None:
            truths.append(truth)

    def truly(truth: StoredRollout) -> tuple[Any, ...]:
        if render is None:
            return _seen(truth, None)
        return (truth.id, truth.repository, truth.state, truth.created_at, render(truth.record))

    problems = [
        f"{listed.id}: listed as {_seen(listed, render)}, stored as {truly(truth)}"
        for listed, truth in zip(everything, truths, strict=False)
        if _seen(listed, render) != truly(truth)
    ]
    if len(truths) != len(everything):
        problems.append(f"listed {[r.id for r in everything]}, stored {[r.id for r in truths]}")
    order = sorted(truths, key=lambda r: (r.created_at, r.id), reverse=True)
    if [r.id for r in order] != [r.id for r in truths]:
        problems.append(f"not newest first: {[r.id for r in truths]}")
    combos = {(r.repository, r.state) for r in truths}
    queries: list[dict[str, str]] = [
        *({"repository": repo} for repo in {r for r, _ in combos}),
        *({"state": state} for state in {s for _, s in combos}),
        *({"repository": repo, "state": state} for repo, state in combos),
    ]
    for query in queries:
        expected = [
            truly(r)
            for r in order
            if r.repository == query.get("repository", r.repository)
            and r.state == query.get("state", r.state)
        ]
        got = [_seen(r, render) for r in await _listed(store, **query)]
        if got != expected:
            problems.append(
                f"{query}: listed {[g[0] for g in got]}, expected {[e[0] for e in expected]}"
            )
    return problems
