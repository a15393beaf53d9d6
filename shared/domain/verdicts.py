"""What a replica probe concluded, as the state machine consumes it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.domain.model import ProbeEvidence


class ProbeVerdict(enum.StrEnum):
    """200 -> PRESENT, 404 -> ABSENT, 401/403 -> CONFIG_ERROR, 429/5xx/timeouts -> TRANSIENT."""

    PRESENT = "present"
    ABSENT = "absent"
    CONFIG_ERROR = "config_error"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe's verdict with its evidence (status, selected headers) and error text."""

    verdict: ProbeVerdict
    evidence: ProbeEvidence | None = None
    error: str | None = None
