"""3D pose errors: MPJPE, P-MPJPE, N-MPJPE, MPJVE, acceleration error, 3D PCK/AUC.

Shapes: predictions and ground truth `[N,J,3]`, N frames in time order, in mm (any unit works; the
result is in the input's unit). `sequence_ids [N]` groups frames into sequences: velocities and
accelerations never cross a sequence boundary, and `averaging="sequence"` weighs every sequence
equally (mean of per-sequence means) instead of every frame equally.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from poseops.errors import DataError
from poseops.metrics._checks import as_points, require_finite, same_shape
from poseops.metrics.result import MetricResult

Averaging = Literal["frame", "sequence"]


def _poses(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = as_points("pred", pred, "[N,J,3]"), as_points("gt", gt, "[N,J,3]")
    same_shape("pred", pred, "gt", gt)
    require_finite("pred", pred)
    require_finite("gt", gt)
    if pred.shape[0] == 0:
        raise DataError("pred: no frames to score")
    return pred, gt


def _sequences(sequence_ids, num_frames: int) -> list[np.ndarray]:
    """Frame indices of each sequence, in order of first appearance (one sequence if ids are None)."""
    if sequence_ids is None:
        return [np.arange(num_frames)]
    ids = np.asarray(sequence_ids)
    if ids.shape != (num_frames,):
        raise DataError(f"sequence_ids: expected shape [{num_frames}], got {list(ids.shape)}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == label) for label in order]


def _average(per_frame: np.ndarray, frame_groups: list[np.ndarray], averaging: Averaging) -> float:
    """Mean of a per-frame error `[M]`: over frames, or over sequences of per-sequence means."""
    if averaging == "frame":
        return float(np.concatenate([per_frame[g] for g in frame_groups]).mean())
    if averaging == "sequence":
        return float(np.mean([per_frame[g].mean() for g in frame_groups if len(g)]))
    raise DataError(f"averaging: expected 'frame' or 'sequence', got {averaging!r}")


def _root_relative(poses: np.ndarray, root: int | None) -> np.ndarray:
    if root is None:
        return poses
    if not -poses.shape[1] <= root < poses.shape[1]:
        raise DataError(f"root: joint {root} does not exist in poses of {poses.shape[1]} joints")
    return poses - poses[:, root : root + 1]


def _protocol(metric: str, alignment: str, root: int | None, averaging: Averaging, frame_groups, **extra) -> dict:
    return {
        "metric": metric,
        "alignment": alignment,
        "root_joint": root,
        "averaging": f"{averaging} (mean over joints, then over "
        + ("all frames)" if averaging == "frame" else "each sequence's frames, then over sequences)"),
        "units": "input units (mm)",
        "num_sequences": len(frame_groups),
        **extra,
    }


def procrustes_align(pred, gt) -> np.ndarray:
    """`pred [N,J,3]` aligned to `gt [N,J,3]` per frame by the similarity transform (rotation without
    reflection, uniform scale, translation) minimising the squared error (Umeyama / Kabsch)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    mu_pred, mu_gt = pred.mean(axis=1, keepdims=True), gt.mean(axis=1, keepdims=True)
    x, y = pred - mu_pred, gt - mu_gt
    u, s, vt = np.linalg.svd(np.einsum("nji,njk->nik", x, y))  # H = X^T Y, [N,3,3]
    sign = np.sign(np.linalg.det(np.einsum("nij,njk->nik", u, vt)))  # -1: the best fit is a reflection
    sign = np.where(sign == 0, 1.0, sign)
    d = np.ones_like(s)
    d[:, -1] = sign
    rotation = np.einsum("nij,nj,njk->nik", u, d, vt)  # x @ R ~ y
    norm_x = (x**2).sum(axis=(1, 2))
    scale = np.where(norm_x > 0, (s * d).sum(axis=1) / np.where(norm_x > 0, norm_x, 1.0), 1.0)
    return scale[:, None, None] * np.einsum("nji,nik->njk", x, rotation) + mu_gt


def mpjpe(pred, gt, root: int | None = 0, sequence_ids=None, averaging: Averaging = "frame") -> MetricResult:
    """Mean per-joint position error (Protocol 1): Euclidean distance after subtracting the root
    joint from both poses (`root=None`: compared as given)."""
    pred, gt = _poses(pred, gt)
    groups = _sequences(sequence_ids, len(pred))
    err = np.linalg.norm(_root_relative(pred, root) - _root_relative(gt, root), axis=-1).mean(axis=1)
    alignment = "root-relative" if root is not None else "none"
    return MetricResult(_average(err, groups, averaging), _protocol("MPJPE", alignment, root, averaging, groups))


def p_mpjpe(pred, gt, sequence_ids=None, averaging: Averaging = "frame") -> MetricResult:
    """MPJPE after per-frame Procrustes alignment (Protocol 2): rotation without reflection,
    uniform scale and translation fitted to the ground truth."""
    pred, gt = _poses(pred, gt)
    groups = _sequences(sequence_ids, len(pred))
    err = np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean(axis=1)
    return MetricResult(
        _average(err, groups, averaging),
        _protocol("P-MPJPE", "per-frame Procrustes: rotation (no reflection), scale, translation",
                  None, averaging, groups),
    )


def n_mpjpe(pred, gt, root: int | None = 0, sequence_ids=None, averaging: Averaging = "frame") -> MetricResult:
    """MPJPE after root-relative poses and a per-frame least-squares scale of the prediction
    (Rhodin et al. 2018; VideoPose3D's n_mpjpe)."""
    pred, gt = _poses(pred, gt)
    groups = _sequences(sequence_ids, len(pred))
    p, g = _root_relative(pred, root), _root_relative(gt, root)
    norm_p = (p**2).sum(axis=(1, 2))
    scale = np.where(norm_p > 0, (p * g).sum(axis=(1, 2)) / np.where(norm_p > 0, norm_p, 1.0), 1.0)
    err = np.linalg.norm(scale[:, None, None] * p - g, axis=-1).mean(axis=1)
    return MetricResult(
        _average(err, groups, averaging),
        _protocol("N-MPJPE", "root-relative, per-frame least-squares scale", root, averaging, groups),
    )


def _temporal_error(pred, gt, sequence_ids, averaging: Averaging, order: int, metric: str) -> MetricResult:
    """Mean error of the order-th finite difference along time, within each sequence."""
    pred, gt = _poses(pred, gt)
    groups = _sequences(sequence_ids, len(pred))
    errors, spans = [], []
    for g in groups:
        if len(g) <= order:
            continue
        diff = np.diff(pred[g], n=order, axis=0) - np.diff(gt[g], n=order, axis=0)
        errors.append(np.linalg.norm(diff, axis=-1).mean(axis=1))
    if not errors:
        raise DataError(f"{metric}: every sequence is shorter than {order + 1} frames")
    per_step = np.concatenate(errors)
    bounds = np.cumsum([0] + [len(e) for e in errors])
    steps = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(errors))]
    unit = "mm/frame" if order == 1 else "mm/frame^2"
    return MetricResult(
        _average(per_step, steps, averaging),
        _protocol(metric, "none (differences are translation-invariant)", None, averaging, steps,
                  units=f"input units per frame^{order} ({unit})",
                  difference=f"order-{order} finite difference along time, within each sequence",
                  sequences_too_short=len(groups) - len(errors)),
    )


def mpjve(pred, gt, sequence_ids=None, averaging: Averaging = "frame") -> MetricResult:
    """Mean per-joint velocity error: ||(p_t - p_{t-1}) - (g_t - g_{t-1})|| averaged (VideoPose3D)."""
    return _temporal_error(pred, gt, sequence_ids, averaging, order=1, metric="MPJVE")


def acceleration_error(pred, gt, sequence_ids=None, averaging: Averaging = "frame") -> MetricResult:
    """Mean per-joint acceleration error: ||(p_{t+1} - 2p_t + p_{t-1}) - (same for g)|| averaged (HMMR/VIBE)."""
    return _temporal_error(pred, gt, sequence_ids, averaging, order=2, metric="acceleration error")


def pck3d(pred, gt, threshold_mm: float = 150.0, root: int | None = 0) -> MetricResult:
    """Fraction of joints within `threshold_mm` of the ground truth after root alignment (MPI-INF-3DHP)."""
    pred, gt = _poses(pred, gt)
    err = np.linalg.norm(_root_relative(pred, root) - _root_relative(gt, root), axis=-1)
    return MetricResult(
        float((err <= threshold_mm).mean()),
        {"metric": "3D PCK", "threshold_mm": float(threshold_mm), "rule": "error <= threshold",
         "alignment": "root-relative" if root is not None else "none", "root_joint": root,
         "averaging": "mean over all joints of all frames"},
    )


def auc3d(pred, gt, max_threshold_mm: float = 150.0, step_mm: float = 5.0, root: int | None = 0) -> MetricResult:
    """Mean 3D PCK over thresholds 0, step, ..., max (MPI-INF-3DHP's AUC: 31 thresholds by default)."""
    thresholds = np.arange(0.0, max_threshold_mm + step_mm / 2, step_mm)
    values = [pck3d(pred, gt, t, root).value for t in thresholds]
    return MetricResult(
        float(np.mean(values)),
        {"metric": "3D AUC", "thresholds_mm": {"start": 0.0, "stop": float(max_threshold_mm), "step": float(step_mm)},
         "integration": "mean of PCK over the thresholds", "alignment": "root-relative" if root is not None else "none",
         "root_joint": root, "averaging": "mean over all joints of all frames"},
    )
