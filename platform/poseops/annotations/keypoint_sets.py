"""A source's categories onto the keypoint sets poseops knows, and who takes which instances.

`map_categories` runs on every imported part before it is checked: a category whose keypoints name
each joint of a built-in set once (in any order, under any spelling of `poseops.skeletons.KEYPOINT_ALIASES`,
or through the source's own `keypoint_map`) is renamed and reordered to that set, its annotations'
keypoints permuted with it, and the mapping is noted in the part's `info.keypoint_mappings` (the file's
own names stay in the category as `keypoints_source`). A category of a keypoint set of the user's own
gets its skeleton from the names when it has none (a repair) and, without `sigmas`, a default OKS
sigma for each keypoint with a warning (OKS needs one; Ronchi & Perona 2017, "Benchmarking and Error
Diagnosis in Multi-Instance Pose Estimation", define the per-keypoint constants as measured spreads).

`family_coverage` counts, per source and category, how many instances each family's keypoint set takes
and why the others are skipped, so no category is dropped without a line saying so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from poseops.annotations.checks import Repairs
from poseops.skeletons import (
    COCO17,
    SKELETONS,
    Skeleton,
    categories_for_skeleton,
    closest_keypoint_set,
    edges_from_names,
    match_keypoint_set,
)

# The mean of COCO-17's per-keypoint sigmas (cocoeval.py): a neutral constant where a set gives none.
DEFAULT_SIGMA = round(float(np.mean(COCO17.sigmas)), 4)
_PER_KEYPOINT = {"keypoints": 3, "keypoints_clean": 2, "keypoints_3d": 3}


def _permute(values: list, perm: tuple[int, ...], width: int) -> list:
    return [values[width * i + d] for i in perm for d in range(width)]


def map_categories(
    part: dict[str, Any], repairs: Repairs, keypoint_map: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`part` with its categories mapped onto built-in keypoint sets where they name one (see the module doc)."""
    mappings = []
    by_category: dict[Any, tuple[int, ...]] = {}
    for cat in part["categories"]:
        names = cat.get("keypoints")
        if not isinstance(names, list) or not names:
            continue  # the checks name it
        for skeleton in SKELETONS.values():
            perm = match_keypoint_set(names, skeleton, keypoint_map)
            if perm is None:
                continue
            if list(names) != list(skeleton.keypoints):
                by_category[cat.get("id")] = perm
                cat["keypoints_source"] = list(names)
                cat["keypoints"] = list(skeleton.keypoints)
                cat["skeleton"] = [[a + 1, b + 1] for a, b in skeleton.edges]
                sigmas = cat.get("sigmas")
                if isinstance(sigmas, list) and len(sigmas) == len(perm):
                    cat["sigmas"] = [sigmas[i] for i in perm]  # the file's own, in the set's order
                elif sigmas is None and skeleton.sigmas is not None:
                    cat["sigmas"] = list(skeleton.sigmas)
                mappings.append(
                    {
                        "category": cat.get("name"),
                        "keypoint_set": skeleton.name,
                        "renamed": sum(1 for a, b in zip(names, skeleton.keypoints) if a != b),
                        "reordered": perm != tuple(range(len(perm))),
                    }
                )
            break
        else:
            _own_keypoint_set(cat, names, repairs, keypoint_map)
    if by_category:
        part = {**part, "annotations": [_reordered(a, by_category) for a in part["annotations"]]}
    if mappings:
        part["info"] = {**part.get("info", {}), "keypoint_mappings": mappings}
    return part


def _reordered(ann: Any, by_category: dict[Any, tuple[int, ...]]) -> Any:
    if not isinstance(ann, dict) or ann.get("category_id") not in by_category:
        return ann
    perm = by_category[ann["category_id"]]
    out = dict(ann)
    for field, width in _PER_KEYPOINT.items():
        values = ann.get(field)
        if isinstance(values, list) and len(values) == width * len(perm):
            out[field] = _permute(values, perm, width)
    return out


def _own_keypoint_set(
    cat: dict, names: list, repairs: Repairs, keypoint_map: Mapping[str, str] | None
) -> None:
    """A set of the user's own: skeleton from the names when missing, sigmas defaulted with a warning."""
    if not cat.get("skeleton"):
        edges = edges_from_names(names, keypoint_map)
        if edges:
            cat["skeleton"] = [[a + 1, b + 1] for a, b in edges]
            repairs.add("category", "skeleton edges from keypoint names", cat.get("id"), len(edges))
    if cat.get("sigmas") is None:
        closest, shared = closest_keypoint_set(names, keypoint_map)
        cat["sigmas"] = [DEFAULT_SIGMA] * len(names)
        repairs.warn(
            f"category {cat.get('name')!r} ({len(names)} keypoints, {shared} shared with {closest}): "
            f"no OKS sigmas given, {DEFAULT_SIGMA} used for each keypoint"
        )


def family_coverage(
    data: dict[str, Any], families: Mapping[str, str | Skeleton]
) -> list[dict[str, Any]]:
    """Per (source, category) of `data`: instances, and per family (name -> keypoint set) how many it
    takes and why it skips the others ({"crowd": n, "no labelled keypoint": n} or, for a category whose
    keypoints are not the family's set, {"keypoints are not <set>": n}).

    Rows: {"source", "category", "instances", "families": {family: {"taken", "skipped": {reason: n}}},
    "closest": (set, shared) for a category no family takes, else None}."""
    skeletons = {f: s if isinstance(s, Skeleton) else SKELETONS[s] for f, s in families.items()}
    takes = {f: categories_for_skeleton(data["categories"], s) for f, s in skeletons.items()}
    images = {img["id"]: img for img in data["images"]}
    names = {c["id"]: c for c in data["categories"]}
    groups: dict[tuple[str, Any], list[dict]] = defaultdict(list)
    for ann in data["annotations"]:
        groups[(str(images[ann["image_id"]].get("source") or ""), ann["category_id"])].append(ann)
    rows = []
    for (source, category_id), anns in sorted(
        groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
    ):
        category = names[category_id]
        per_family = {}
        for family, skeleton in skeletons.items():
            if category_id not in takes[family]:
                per_family[family] = {
                    "taken": 0,
                    "skipped": {f"keypoints are not {skeleton.name}": len(anns)},
                }
                continue
            skipped: dict[str, int] = defaultdict(int)
            for ann in anns:
                if ann.get("iscrowd"):
                    skipped["crowd"] += 1
                elif ann.get("num_keypoints", 1) <= 0:
                    skipped["no labelled keypoint"] += 1
            per_family[family] = {
                "taken": len(anns) - sum(skipped.values()),
                "skipped": dict(skipped),
            }
        untaken = not any(category_id in t for t in takes.values())
        rows.append(
            {
                "source": source,
                "category": category.get("name"),
                "instances": len(anns),
                "families": per_family,
                "closest": closest_keypoint_set(category.get("keypoints") or [])
                if untaken
                else None,
            }
        )
    return rows


def coverage_lines(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(one line per source and category, warnings for categories no family takes)."""
    lines, warnings = [], []
    for row in rows:
        parts = []
        for family, c in row["families"].items():
            why = ", ".join(f"{n} {reason}" for reason, n in c["skipped"].items() if n)
            parts.append(f"{family} {c['taken']}" + (f" (skipped {why})" if why else ""))
        lines.append(
            f"{row['source']} / {row['category']}: {row['instances']} instances; "
            + "; ".join(parts)
        )
        if row["closest"] is not None:
            closest, shared = row["closest"]
            warnings.append(
                f"source {row['source']!r}: category {row['category']!r} is taken by no family "
                f"(closest keypoint set: {closest}, {shared} joints in common); give a keypoint_map"
            )
    return lines, warnings
