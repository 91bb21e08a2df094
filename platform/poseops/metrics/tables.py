"""Per-keypoint and per-joint-group tables (the Table 5 layout of
Zhang, He, Wu, 2025, "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks" for COCO-17).

Scores are pooled: a group's PCK is the fraction of all visible keypoints of that group (over all
instances) that are correct, so left and right joints merge into one row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from poseops.errors import DataError
from poseops.metrics.keypoints2d import keypoint_distances, normalised_distances

COCO17_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# The rows of VMHPE's Table 5 (Zhang, He, Wu, 2025), in its order; "head" = the 5 face points.
COCO17_TABLE5_GROUPS: dict[str, tuple[int, ...]] = {
    "wrist": (9, 10),
    "elbow": (7, 8),
    "shoulder": (5, 6),
    "hip": (11, 12),
    "knee": (13, 14),
    "ankle": (15, 16),
    "head": (0, 1, 2, 3, 4),
}


def _pooled(values: np.ndarray, mask: np.ndarray, indices: Sequence[int]) -> tuple[float | None, int]:
    selected = mask[:, list(indices)]
    count = int(selected.sum())
    return (float(values[:, list(indices)][selected].mean()) if count else None), count


def _keypoint_rows(values, mask, names) -> list[dict]:
    rows = []
    for k in range(mask.shape[1]):
        value, count = _pooled(values, mask, [k])
        rows.append({"keypoint": names[k] if names else str(k), "index": k, "value": value, "num_scored": count})
    return rows


def _group_rows(values, mask, groups: Mapping[str, Sequence[int]]) -> list[dict]:
    rows = []
    for name, indices in groups.items():
        if not indices or not all(0 <= int(k) < mask.shape[1] for k in indices):
            raise DataError(
                f"groups[{name!r}]: keypoint indices {list(indices)} do not fit a skeleton of "
                f"{mask.shape[1]} keypoints (pass groups=None, or this skeleton's groups)"
            )
        value, count = _pooled(values, mask, indices)
        rows.append({"group": name, "keypoints": list(indices), "value": value, "num_scored": count})
    return rows


def pck_table(pred, gt, visible, normaliser, threshold: float = 0.1, normaliser_name: str = "bbox",
              keypoint_names: Sequence[str] | None = COCO17_KEYPOINTS,
              groups: Mapping[str, Sequence[int]] | None = COCO17_TABLE5_GROUPS) -> dict:
    """PCK per keypoint and per joint group: `{"keypoints": [rows], "groups": [rows], "protocol"}`.

    pred, gt `[N,K,2]`; visible `[N,K]`; normaliser `[N]`. A row's value is None when nothing in it
    is visible. Names and groups default to COCO-17 and Table 5; pass None for other skeletons.
    """
    ratio, mask = normalised_distances(pred, gt, visible, normaliser)
    correct = (ratio <= threshold).astype(np.float64)
    names = keypoint_names if keypoint_names and len(keypoint_names) == mask.shape[1] else None
    return {
        "keypoints": _keypoint_rows(correct, mask, names),
        "groups": _group_rows(correct, mask, groups) if groups else [],
        "protocol": {"metric": "PCK", "threshold": float(threshold), "normaliser": normaliser_name,
                     "rule": "distance / normaliser <= threshold",
                     "averaging": "pooled over the visible keypoints of each row, all instances",
                     "groups": {k: list(v) for k, v in (groups or {}).items()}},
    }


def epe_table(pred, gt, visible, keypoint_names: Sequence[str] | None = COCO17_KEYPOINTS,
              groups: Mapping[str, Sequence[int]] | None = COCO17_TABLE5_GROUPS) -> dict:
    """Mean pixel error per keypoint and per joint group, same layout as `pck_table`."""
    dist, mask = keypoint_distances(pred, gt, visible)
    names = keypoint_names if keypoint_names and len(keypoint_names) == mask.shape[1] else None
    return {
        "keypoints": _keypoint_rows(dist, mask, names),
        "groups": _group_rows(dist, mask, groups) if groups else [],
        "protocol": {"metric": "EPE", "units": "px",
                     "averaging": "pooled over the visible keypoints of each row, all instances",
                     "groups": {k: list(v) for k, v in (groups or {}).items()}},
    }


def table_markdown(table: dict, part: str = "groups", scale: float = 100.0, digits: int = 1) -> str:
    """A markdown table of `table[part]` ("groups" or "keypoints"), values x `scale` (100: percent)."""
    key = "group" if part == "groups" else "keypoint"
    lines = [f"| {key.capitalize()} | {table['protocol']['metric']} | n |", "|---|---|---|"]
    for row in table[part]:
        value = "-" if row["value"] is None else f"{row['value'] * scale:.{digits}f}"
        lines.append(f"| {row[key]} | {value} | {row['num_scored']} |")
    return "\n".join(lines)
