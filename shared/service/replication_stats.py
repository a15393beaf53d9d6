"""Each region's replication statistics: kept in one table entity per region, read cheaply.

Reconcile adds a sample when it sees an image arrive in a secondary region and asks for
the models when a waiting region has no expected arrival yet. Models are cached for
`max_age_s` in the process (they change slowly; a listing or a reconcile pass should not
cost a table query each). A sample is keyed by rollout generation, so a replayed step
adds nothing; a sample whose write fails is dropped with a warning: it is a statistic,
and the next arrival brings another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared.adapters.rollout_repository import RolloutRepository
from shared.domain.replication import (
    SAMPLE_WINDOW,
    ReplicationModel,
    ReplicationSample,
    add_sample,
    models_by_region,
)
from shared.domain.serialization import replication_model_to_document
from shared.errors import TransientError

log = logging.getLogger("georollout.replication")

# Writers of one region's entity that lose the ETag race read again this often.
_ATTEMPTS = 5


class ReplicationStats:
    """The regions' replication models, from the table, cached for `max_age_s`."""

    def __init__(
        self,
        rollouts: RolloutRepository,
        *,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rollouts = rollouts
        self._max_age_s = max_age_s
        self._clock = clock
        self._models: dict[str, ReplicationModel] | None = None
        self._read_at = 0.0

    async def models(self) -> dict[str, ReplicationModel]:
        """Every region's model (regions without samples are absent)."""
        if self._models is None or self._clock() - self._read_at > self._max_age_s:
            stored = await self._rollouts.replication_samples()
            self._models = models_by_region({r: s for r, (s, _) in stored.items()})
            self._read_at = self._clock()
        return self._models

    async def record(self, found: Sequence[tuple[str, ReplicationSample]]) -> None:
        """Add each (region, sample); never raises for a store fault (logged, dropped)."""
        for region, sample in found:
            try:
                stored = await self._record(region, sample)
            except TransientError as error:
                log.warning(
                    "replication sample of %s in %s dropped: %s", sample.rollout_id, region, error
                )
                continue
            if not stored:
                log.warning(
                    "replication sample of %s in %s dropped after %d write conflicts",
                    sample.rollout_id,
                    region,
                    _ATTEMPTS,
                )
        self._models = None  # the next read sees the new samples

    async def _record(self, region: str, sample: ReplicationSample) -> bool:
        for _ in range(_ATTEMPTS):
            stored = await self._rollouts.replication_samples()
            samples, version = stored.get(region, ((), None))
            if any(s.key == sample.key for s in samples):
                return True  # a replayed step: already counted
            kept = add_sample(samples, sample, SAMPLE_WINDOW)
            if await self._rollouts.put_replication_samples(region, kept, version=version):
                return True
        return False

    async def document(self, regions: Sequence[str]) -> dict[str, Any]:
        """`GET /api/stats`: each of `regions` (configured order) with its model."""
        models = await self.models()
        return {
            "window": SAMPLE_WINDOW,
            "regions": [
                replication_model_to_document(models.get(region) or ReplicationModel.empty(region))
                for region in regions
            ],
        }
