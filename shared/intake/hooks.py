"""The `/api/hooks/acr` body: an ACR webhook (one event) or a Distribution envelope, told apart by shape."""

from __future__ import annotations

from typing import Any

from shared.domain.push import DeleteNotice, PushNotice
from shared.intake.acr_webhook import parse_acr_webhook
from shared.intake.distribution import is_distribution_envelope, parse_distribution_envelope
from shared.intake.notices import Ignored


def parse_hook_payload(
    obj: Any, *, registry: str | None = None, region: str | None = None, strict: bool = True
) -> list[PushNotice | DeleteNotice | Ignored]:
    """Parse either payload kind into notices and ignored deliveries (InvalidInputError when malformed)."""
    if is_distribution_envelope(obj):
        return parse_distribution_envelope(obj, registry=registry, region=region, strict=strict)
    return [parse_acr_webhook(obj, registry=registry, region=region)]
