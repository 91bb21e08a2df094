"""`MetricResult`: a metric's value together with the protocol that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricResult:
    """A scalar metric and how it was computed.

    `protocol` names everything needed to compare the number with another: alignment, root joint,
    averaging, thresholds, normaliser, units.
    """

    value: float
    protocol: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """`{"value": float, "protocol": {...}}`, JSON-ready."""
        return {"value": float(self.value), "protocol": dict(self.protocol)}
