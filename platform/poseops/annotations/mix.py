"""Mixing sources (synthetic captures, users' real files) in a family's training data.

params.yaml `data.weights` maps a source (an image's `source`: `synthetic`, a source's `name`, or its
default `<format>:<file>`) to the share of its training samples kept, 0..1; a source not named keeps
all of them. Validation keeps every source, so a model trained on synthetic data alone (real weight 0)
is still evaluated on real data. The kept samples are a seeded choice (the split seed), and the
dataset card counts each split's samples per source (`source.mix`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from poseops.errors import ConfigError


def item_source(item: dict[str, Any]) -> str:
    """The source of a derivation item (crop kinds carry the image, sequence kinds the source itself)."""
    return str(item.get("source") or (item.get("image") or {}).get("source") or "")


def source_mix(items: list[dict[str, Any]]) -> dict[str, int]:
    """Samples per source, sorted by name."""
    return dict(sorted(Counter(item_source(i) for i in items).items()))


def weigh_sources(
    items: list[dict[str, Any]],
    weights: Mapping[str, float],
    labels: dict[str, Any],
    seed: int,
    where: str,
) -> list[dict[str, Any]]:
    """`items` with only round(w·n) of the n items of each source weighted w kept (a seeded choice, in the
    items' order). A weight naming no source of `labels` is a ConfigError listing the sources there are."""
    present = {str(img.get("source") or "") for img in labels["images"]}
    unknown = sorted(set(weights) - present)
    if unknown:
        raise ConfigError(
            f"params.yaml: data.weights names source(s) {', '.join(unknown)} that {where} does not "
            f"hold (its sources: {', '.join(sorted(present))})"
        )
    rng = np.random.default_rng(seed)
    keep = set()
    for source, weight in sorted(weights.items()):
        positions = [i for i, item in enumerate(items) if item_source(item) == source]
        chosen = rng.permutation(len(positions))[: round(weight * len(positions))]
        keep |= {positions[j] for j in chosen}
    weighted = {i for i, item in enumerate(items) if item_source(item) in weights}
    return [item for i, item in enumerate(items) if i not in weighted or i in keep]
