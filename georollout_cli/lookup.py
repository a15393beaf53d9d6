"""Finding the rollout IMAGE_OR_ID names: straight by id when the reference gives it (an id, or
an image by digest, whose id is computed), through `GET /api/rollouts?repository=` otherwise
(a tag, or an id cut short)."""

from __future__ import annotations

from typing import Any

from georollout_cli.api import ApiClient
from georollout_cli.images import ImageDigest, ImageTag, RolloutId, RolloutRef, ShortRolloutId


class AmbiguousRolloutError(LookupError):
    """A cut-short id matches more than one rollout."""


def direct_id(ref: RolloutRef) -> str | None:
    """The rollout id when the reference alone gives it (no listing needed)."""
    if isinstance(ref, RolloutId):
        return ref.value
    if isinstance(ref, ImageDigest):
        return ref.rollout_id
    return None


def find_rollout(
    client: ApiClient, ref: RolloutRef, *, timeout: float | None = None
) -> dict[str, Any] | None:
    """The rollout document `ref` names, or None when the API has none (yet)."""
    known = direct_id(ref)
    if known is not None:
        return client.get_rollout(known, timeout=timeout)
    if isinstance(ref, ImageTag):
        return _newest_tagged(client, ref, timeout)
    assert isinstance(ref, ShortRolloutId)
    return _by_digest_prefix(client, ref, timeout)


def find_rollout_id(
    client: ApiClient, ref: RolloutRef, *, timeout: float | None = None
) -> str | None:
    """The id of the rollout `ref` names: without asking when the reference gives it, else
    through `find_rollout`; None when the API has no such rollout."""
    known = direct_id(ref)
    if known is not None:
        return known
    found = find_rollout(client, ref, timeout=timeout)
    return str(found["id"]) if found is not None else None


def _same_registry(document: dict[str, Any], registry: str) -> bool:
    return str(document.get("registry", "")).lower() == registry


def _newest_tagged(
    client: ApiClient, ref: ImageTag, timeout: float | None
) -> dict[str, Any] | None:
    # The listing is newest first: the first rollout the tag names is the one a push of the
    # tag made last. A tag still pending (claimed, not yet confirmed by the registry) counts:
    # right after a push it is the only sign of the new rollout.
    for document in client.iter_rollouts(repository=ref.repository, timeout=timeout):
        named = [*(document.get("tags") or []), *(document.get("pending_tags") or [])]
        if _same_registry(document, ref.registry) and ref.tag in named:
            return document
    return None


def _by_digest_prefix(
    client: ApiClient, ref: ShortRolloutId, timeout: float | None
) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = []
    for document in client.iter_rollouts(repository=ref.repository, timeout=timeout):
        digest = str(document.get("digest", ""))
        if _same_registry(document, ref.registry) and digest.startswith(ref.digest_prefix):
            found.append(document)
            if len(found) > 1:
                raise AmbiguousRolloutError(
                    f"{ref.describe()} matches more than one rollout: give more of the digest"
                )
    return found[0] if found else None
