"""Input checks shared by the metric functions: shapes, finiteness, visibility masks.

Every failure raises `DataError` naming the argument and the first offending record, so a bad input
never turns into a silently wrong number.
"""

from __future__ import annotations

import numpy as np

from poseops.errors import DataError


def as_points(name: str, array, shape: str = "[N,K,2]") -> np.ndarray:
    """`array` as float64 of the shape described by `shape`, e.g. "[N,K,2]" or "[T,J,3]".

    Axes named by letters may have any length; axes named by digits must have that length.
    """
    axes = shape.strip("[]").split(",")
    try:
        points = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: not a numeric array ({exc})") from exc
    ok = points.ndim == len(axes) and all(
        not a.isdigit() or points.shape[i] == int(a) for i, a in enumerate(axes)
    )
    if not ok:
        raise DataError(f"{name}: expected shape {shape}, got {list(points.shape)}")
    return points


def as_mask(name: str, visible, shape: tuple[int, ...]) -> np.ndarray:
    """A visibility mask `[N,K]`: booleans, or COCO flags 0/1/2 (visible means > 0)."""
    mask = np.asarray(visible)
    if mask.shape != tuple(shape):
        raise DataError(f"{name}: expected shape {list(shape)}, got {list(mask.shape)}")
    if mask.dtype == bool:
        return mask
    if not np.issubdtype(mask.dtype, np.number) or np.isnan(mask.astype(float)).any():
        raise DataError(f"{name}: expected booleans or COCO visibility flags 0/1/2")
    return mask > 0


def same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise DataError(
            f"{name_a} has shape {list(a.shape)} but {name_b} has {list(b.shape)}: "
            "wrong number of instances or keypoints"
        )


def first_bad(mask: np.ndarray) -> str:
    """`[i, j, ...]` of the first True entry of `mask`, for error messages."""
    return str([int(i) for i in np.argwhere(mask)[0]])


def require_finite(name: str, array: np.ndarray, where: np.ndarray | None = None) -> None:
    """Refuse NaN/inf in `array` (only at entries selected by `where`, broadcast on the last axis)."""
    bad = ~np.isfinite(array)
    if bad.ndim > 1:
        bad = bad.any(axis=-1)
    if where is not None:
        bad = bad & where
    if bad.any():
        raise DataError(f"{name}: non-finite value (NaN or inf) at record {first_bad(bad)}")
