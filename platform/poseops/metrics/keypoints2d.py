"""2D keypoint accuracy: PCK (any normaliser), PCKh, PCK curves, AUC, EPE, NME.

Shapes: predictions and ground truth `[N,K,2]` in pixels, visibility `[N,K]` (bool or COCO 0/1/2;
a keypoint counts when visible > 0), per-instance normalisers `[N]` in pixels. Every score is
averaged over all visible keypoints of all instances (each visible keypoint weighs the same).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from poseops.errors import DataError
from poseops.metrics._checks import as_mask, as_points, require_finite, same_shape
from poseops.metrics.result import MetricResult

AVERAGING = "mean over all visible keypoints of all instances"

# COCO-17 indices used by the default torso normaliser (left shoulder to right hip).
COCO_LEFT_SHOULDER, COCO_RIGHT_HIP = 5, 12
# MPII's PCKh head size: 0.6 x the diagonal of the annotated head box.
MPII_HEAD_BOX_FACTOR = 0.6


def _points_and_mask(pred, gt, visible) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt = as_points("pred", pred), as_points("gt", gt)
    same_shape("pred", pred, "gt", gt)
    mask = as_mask("visible", visible, gt.shape[:2])
    require_finite("pred", pred)
    require_finite("gt", gt, where=mask)
    if not mask.any():
        raise DataError("visible: no visible keypoints to score")
    return pred, gt, mask


def _as_normaliser(normaliser, mask: np.ndarray) -> np.ndarray:
    """`normaliser` as `[N]` floats; refuse non-positive or non-finite sizes where something is scored."""
    norm = np.asarray(normaliser, dtype=np.float64)
    if norm.ndim == 0:
        norm = np.full(mask.shape[0], float(norm))
    if norm.shape != (mask.shape[0],):
        raise DataError(f"normaliser: expected shape [{mask.shape[0]}], got {list(norm.shape)}")
    scored = mask.any(axis=1)
    bad = scored & ~(np.isfinite(norm) & (norm > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"normaliser: instance {i} has size {norm[i]!r}; it must be a positive finite number")
    return norm


def keypoint_distances(pred, gt, visible) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean pixel distances `[N,K]` and the checked visibility mask `[N,K]`."""
    pred, gt, mask = _points_and_mask(pred, gt, visible)
    return np.linalg.norm(pred - gt, axis=-1), mask


def normalised_distances(pred, gt, visible, normaliser) -> tuple[np.ndarray, np.ndarray]:
    """Distances divided by each instance's normaliser `[N,K]`, and the visibility mask `[N,K]`."""
    dist, mask = keypoint_distances(pred, gt, visible)
    norm = _as_normaliser(normaliser, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dist / norm[:, None], mask


# ---- normalisers -------------------------------------------------------------------------


def keypoint_box_size(gt, visible) -> np.ndarray:
    """Longer side of the tight box around each instance's visible keypoints.

    gt `[N,K,2]`, visible `[N,K]` -> `[N]` pixels (0 for an instance with no visible keypoint).
    """
    gt = as_points("gt", gt)
    mask = as_mask("visible", visible, gt.shape[:2])
    require_finite("gt", gt, where=mask)
    inf = np.where(mask[..., None], gt, np.inf)
    sup = np.where(mask[..., None], gt, -np.inf)
    with np.errstate(invalid="ignore"):
        side = (sup.max(axis=1) - inf.min(axis=1)).max(axis=1)
    return np.where(mask.any(axis=1), side, 0.0)


def bbox_size(bboxes) -> np.ndarray:
    """Longer side of COCO boxes `[N,4]` (x, y, w, h) -> `[N]` pixels."""
    boxes = as_points("bboxes", bboxes, "[N,4]")
    require_finite("bboxes", boxes)
    return np.maximum(boxes[:, 2], boxes[:, 3])


def torso_size(gt, visible, first: int = COCO_LEFT_SHOULDER, second: int = COCO_RIGHT_HIP) -> np.ndarray:
    """Distance between two torso keypoints (COCO-17 default: left shoulder to right hip) -> `[N]`.

    NaN where either keypoint is not visible; `pck` refuses those instances if they have anything to score.
    """
    gt = as_points("gt", gt)
    mask = as_mask("visible", visible, gt.shape[:2])
    size = np.linalg.norm(gt[:, first] - gt[:, second], axis=-1)
    return np.where(mask[:, first] & mask[:, second], size, np.nan)


def head_box_size(head_boxes) -> np.ndarray:
    """MPII's PCKh head size: 0.6 x the diagonal of head boxes `[N,4]` (x1, y1, x2, y2) -> `[N]`."""
    boxes = as_points("head_boxes", head_boxes, "[N,4]")
    require_finite("head_boxes", boxes)
    return MPII_HEAD_BOX_FACTOR * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=-1)


# ---- metrics -----------------------------------------------------------------------------


def pck(pred, gt, visible, normaliser, threshold: float = 0.2, normaliser_name: str = "keypoint_box") -> MetricResult:
    """Fraction of visible keypoints whose distance / normaliser is <= threshold.

    pred, gt `[N,K,2]`; visible `[N,K]`; normaliser `[N]` (pixels, e.g. `keypoint_box_size`,
    `bbox_size`, `torso_size`, `head_box_size`).
    """
    ratio, mask = normalised_distances(pred, gt, visible, normaliser)
    correct = ratio[mask] <= threshold
    return MetricResult(
        value=float(correct.mean()),
        protocol={
            "metric": "PCK",
            "threshold": float(threshold),
            "normaliser": normaliser_name,
            "rule": "distance / normaliser <= threshold",
            "averaging": AVERAGING,
            "num_instances": int(mask.shape[0]),
            "num_keypoints_scored": int(mask.sum()),
        },
    )


def pckh(pred, gt, visible, head_size, threshold: float = 0.5) -> MetricResult:
    """PCKh: PCK normalised by head size `[N]` (MPII: `head_box_size`), default threshold 0.5."""
    result = pck(pred, gt, visible, head_size, threshold=threshold, normaliser_name="head")
    return MetricResult(result.value, {**result.protocol, "metric": "PCKh"})


# MPII-16 (poseops.skeletons.MPII16) joints per reported type, and the two left out of MPII's mean: its
# evaluation (Andriluka et al. 2014; the code HRNet and mmpose ship, `PCKh.mask[6:8] = True`) reports
# PCKh@0.5 per joint type and a mean over all labelled joints but the pelvis and thorax.
MPII_JOINT_TYPES = {
    "head": (9,),
    "shoulder": (12, 13),
    "elbow": (11, 14),
    "wrist": (10, 15),
    "hip": (2, 3),
    "knee": (1, 4),
    "ankle": (0, 5),
}
MPII_EXCLUDED = (6, 7)  # pelvis, thorax


def mpii_pckh(pred, gt, visible, head_boxes, threshold: float = 0.5) -> MetricResult:
    """MPII's PCKh: pred, gt `[N,16,2]` in MPII-16 order, visible `[N,16]`, head boxes `[N,4]` as
    imported (`bbox_head`: x, y, w, h). A joint is correct when its distance is at most `threshold` x
    0.6 x the head box diagonal; the value is the mean over labelled joints except the pelvis and thorax
    (each labelled joint weighs the same, as MPII's per-joint rates weighted by joint counts); the
    protocol holds the rate per joint type."""
    boxes = as_points("head_boxes", head_boxes, "[N,4]")
    require_finite("head_boxes", boxes)
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    ratio, mask = normalised_distances(pred, gt, visible, head_box_size(corners))
    if mask.shape[1] != 16:
        raise DataError(f"pred: MPII PCKh needs the 16 MPII joints, got {mask.shape[1]}")
    scored = mask.copy()
    scored[:, list(MPII_EXCLUDED)] = False
    if not scored.any():
        raise DataError("visible: no labelled joint but the pelvis and thorax to score")
    correct = (ratio <= threshold) & mask
    per_type = {
        name: float(correct[:, list(joints)].sum() / mask[:, list(joints)].sum())
        for name, joints in MPII_JOINT_TYPES.items()
        if mask[:, list(joints)].any()
    }
    return MetricResult(
        value=float(correct[scored].mean()),
        protocol={
            "metric": "PCKh",
            "threshold": float(threshold),
            "normaliser": "head: 0.6 x head box diagonal",
            "rule": "distance / normaliser <= threshold",
            "averaging": "mean over labelled joints except pelvis and thorax (MPII)",
            "per_joint_type": per_type,
            "num_instances": int(mask.shape[0]),
            "num_keypoints_scored": int(scored.sum()),
        },
    )


def pck_curve(pred, gt, visible, normaliser, thresholds: Sequence[float], normaliser_name: str = "keypoint_box") -> dict:
    """PCK at each threshold, for plotting: `{"thresholds": [...], "values": [...], "protocol": {...}}`."""
    ratio, mask = normalised_distances(pred, gt, visible, normaliser)
    scored = ratio[mask]
    thresholds = [float(t) for t in thresholds]
    return {
        "thresholds": thresholds,
        "values": [float((scored <= t).mean()) for t in thresholds],
        "protocol": {
            "metric": "PCK curve",
            "normaliser": normaliser_name,
            "rule": "distance / normaliser <= threshold",
            "averaging": AVERAGING,
            "num_keypoints_scored": int(mask.sum()),
        },
    }


def auc(pred, gt, visible, normaliser, max_threshold: float = 0.2, steps: int = 21,
        normaliser_name: str = "keypoint_box") -> MetricResult:
    """Area under the PCK curve on `steps` evenly spaced thresholds in [0, max_threshold], divided by
    max_threshold (trapezoid rule), so a perfect prediction scores 1."""
    if max_threshold <= 0 or steps < 2:
        raise DataError(f"auc: need max_threshold > 0 and steps >= 2, got {max_threshold}, {steps}")
    thresholds = np.linspace(0.0, max_threshold, steps)
    curve = pck_curve(pred, gt, visible, normaliser, thresholds, normaliser_name)
    area = np.trapezoid(curve["values"], thresholds) / max_threshold
    return MetricResult(
        value=float(area),
        protocol={
            **curve["protocol"],
            "metric": "AUC",
            "thresholds": {"start": 0.0, "stop": float(max_threshold), "steps": int(steps)},
            "integration": "trapezoid over PCK(threshold), divided by max_threshold",
        },
    )


def epe(pred, gt, visible) -> MetricResult:
    """End-point error: mean Euclidean distance in pixels over visible keypoints."""
    dist, mask = keypoint_distances(pred, gt, visible)
    return MetricResult(
        value=float(dist[mask].mean()),
        protocol={"metric": "EPE", "units": "px", "averaging": AVERAGING,
                  "num_keypoints_scored": int(mask.sum())},
    )


def nme(pred, gt, visible, normaliser, normaliser_name: str = "keypoint_box") -> MetricResult:
    """Normalised mean error: mean of distance / normaliser over visible keypoints."""
    ratio, mask = normalised_distances(pred, gt, visible, normaliser)
    return MetricResult(
        value=float(ratio[mask].mean()),
        protocol={"metric": "NME", "normaliser": normaliser_name, "averaging": AVERAGING,
                  "num_keypoints_scored": int(mask.sum())},
    )
