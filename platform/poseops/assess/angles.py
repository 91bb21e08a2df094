"""Chain angle series of a keypoint sequence, and their optional temporal smoothing.

The angles are `poseops.skeletons.joint_angles` (elbow, shoulder, trunk-hip-knee, knee, trunk lean,
arm mean, arm symmetry); a task is judged on the chains of `poseops.skeletons.TASK_CHAINS`, which
follow the key angle chains of Table 7 in Zhang, He, Wu (2025), "VMHPE: Human Pose Estimation for
Virtual Maintenance Tasks".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from poseops.config import OneEuroParams
from poseops.errors import ConfigError
from poseops.skeletons import TASK_CHAINS, Skeleton, joint_angles

TASKS: tuple[str, ...] = tuple(TASK_CHAINS)
CHAIN_NAMES: tuple[str, ...] = (
    "left_elbow",
    "right_elbow",
    "left_shoulder",
    "right_shoulder",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "trunk_lean",
    "arm_mean",
    "arm_symmetry",
)


def mirror_name(chain: str) -> str:
    """The chain's left/right counterpart (`left_elbow` <-> `right_elbow`); itself for midline chains."""
    if chain.startswith("left_"):
        return "right_" + chain[5:]
    if chain.startswith("right_"):
        return "left_" + chain[6:]
    return chain


def task_weights(task: str, weights: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The chain weights of `task`, summing to 1: `weights[task]` if given, else the task's chains
    (`TASK_CHAINS`) weighted equally. ConfigError names an unknown chain or a weight that sums to 0."""
    chosen = dict(weights.get(task) or dict.fromkeys(TASK_CHAINS[task], 1.0))
    for name, value in chosen.items():
        if name not in CHAIN_NAMES:
            raise ConfigError(
                f"assess.scoring.weights.{task}.{name}: unknown chain; chains: {', '.join(CHAIN_NAMES)}"
            )
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(
                f"assess.scoring.weights.{task}.{name}: weight must be >= 0, got {value}"
            )
    total = sum(chosen.values())
    if total <= 0:
        raise ConfigError(f"assess.scoring.weights.{task}: the weights sum to 0")
    return {name: value / total for name, value in chosen.items() if value > 0}


def chain_series(
    keypoints: np.ndarray, valid: np.ndarray, skeleton: Skeleton, chains: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Angle series [T] (degrees, NaN where a joint it needs is missing) of each chain the skeleton has."""
    angles = joint_angles(keypoints, skeleton, visibility=valid)
    return {name: angles[name] for name in chains if name in angles}


# ---------------------------------------------------------------- smoothing
def moving_average(series: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of [T] over `window` frames (shrinking at the ends), ignoring NaNs;
    a frame that was NaN stays NaN."""
    if window <= 1:
        return series.copy()
    half = window // 2
    finite = np.isfinite(series)
    values = np.where(finite, series, 0.0)
    kernel = np.ones(2 * half + 1)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    return np.where(finite, out, np.nan)


def one_euro(series: np.ndarray, settings: OneEuroParams) -> np.ndarray:
    """The One-Euro filter of Casiez, Roussel, Vogel (2012), "1€ Filter: A Simple Speed-based Low-pass
    Filter for Noisy Input in Interactive Systems" (CHI 2012): an exponential smoother whose cutoff
    rises with the filtered speed, cutoff = min_cutoff + beta·|dx/dt|. NaN frames stay NaN and are skipped."""
    out = np.full_like(series, np.nan, dtype=np.float64)
    period = 1.0 / settings.rate_hz

    def alpha(cutoff: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / period)

    previous: float | None = None
    speed = 0.0
    for t, x in enumerate(series):
        if not math.isfinite(x):
            continue
        if previous is None:
            previous = float(x)
        else:
            raw_speed = (x - previous) / period
            speed = speed + alpha(settings.d_cutoff) * (raw_speed - speed)
            a = alpha(settings.min_cutoff + settings.beta * abs(speed))
            previous = previous + a * (x - previous)
        out[t] = previous
    return out


def smooth(series: np.ndarray, method: str, window: int, settings: OneEuroParams) -> np.ndarray:
    if method == "none":
        return series
    if method == "moving_average":
        return moving_average(series, window)
    if method == "one_euro":
        return one_euro(series, settings)
    raise ConfigError(
        f"assess.scoring.smoothing: unknown method {method!r} (none, moving_average, one_euro)"
    )


def fill_gaps(series: np.ndarray) -> np.ndarray:
    """[T] with NaN frames linearly interpolated from their finite neighbours (ends held)."""
    finite = np.isfinite(series)
    if finite.all():
        return series
    frames = np.arange(len(series))
    return np.interp(frames, frames[finite], series[finite])
