"""Which deployment serves a scoring call without `azureml-model-deployment`: a deterministic traffic split.

Azure picks a deployment at random by weight. Here the pick is a smooth weighted round-robin
(nginx's algorithm), so tests can count: with {new: 10, old: 90} exactly one of every ten
consecutive calls goes to `new`, and {a: 50, b: 50} alternates. The state is in memory only,
per endpoint; it starts over when the endpoint's traffic map changes or when the set of live,
positively weighted deployments does (a deployment failing or coming back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class _Rotation:
    weights: tuple[tuple[str, int], ...]
    current: dict[str, int] = field(default_factory=dict)


class TrafficRotations:
    """One smooth weighted round-robin per endpoint key."""

    def __init__(self) -> None:
        self._rotations: dict[str, _Rotation] = {}

    def reset(self, endpoint: str) -> None:
        """Start the endpoint's rotation over (its traffic map changed, or it was deleted)."""
        self._rotations.pop(endpoint, None)

    def pick(self, endpoint: str, weights: Iterable[tuple[str, int]]) -> str:
        """The next deployment name for `endpoint` among `(name, positive weight)` pairs.

        Pairs are taken in name order, so ties (the first call of a 50/50 split) go to the
        name that sorts first whatever order the traffic map was sent in.
        """
        ordered = tuple(sorted(weights, key=lambda pair: pair[0].lower()))
        if not ordered:
            raise ValueError("no deployment with a positive weight to pick from")
        rotation = self._rotations.get(endpoint)
        # Different weights in play (a deployment went unhealthy or came back, or a traffic
        # change that arrived without a reset) make the accumulated credits meaningless.
        if rotation is None or rotation.weights != ordered:
            rotation = _Rotation(ordered, {name: 0 for name, _ in ordered})
            self._rotations[endpoint] = rotation
        credit = rotation.current
        for name, weight in ordered:
            credit[name] += weight
        # max() keeps the first of equal candidates: the name-order tie-break above.
        chosen = max(ordered, key=lambda pair: credit[pair[0]])[0]
        credit[chosen] -= sum(weight for _, weight in ordered)
        return chosen
