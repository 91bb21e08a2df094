"""Keypoint sequences with exactly known chain angles, for the assessment tests (no generator involved).

A 2D COCO-17 stick figure drawn from its chain angles: both hips at one point, both shoulders at one
point, so `poseops.skeletons.joint_angles` reads back exactly the angles it was drawn with.
"""

from __future__ import annotations

import math

import numpy as np

from poseops.skeletons import COCO17

J = {name: i for i, name in enumerate(COCO17.keypoints)}
CHAINS = (
    "left_elbow",
    "right_elbow",
    "trunk_lean",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
)


def _rotate(v: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def figure(angles: dict[str, float], origin=(200.0, 300.0)) -> np.ndarray:
    """COCO-17 keypoints [17, 2] (image px, y down) whose chain angles are `angles` (degrees)."""
    hip = np.asarray(origin, float)
    lean = angles["trunk_lean"]
    up = np.array([math.sin(math.radians(lean)), -math.cos(math.radians(lean))])
    shoulder = hip + 120.0 * up
    points = np.zeros((17, 2))
    points[[J["left_hip"], J["right_hip"]]] = hip
    points[[J["left_shoulder"], J["right_shoulder"]]] = shoulder
    head = shoulder + 40.0 * up
    for name, dx in (
        ("nose", 8.0),
        ("left_eye", 5.0),
        ("right_eye", 6.0),
        ("left_ear", -3.0),
        ("right_ear", -2.0),
    ):
        points[J[name]] = head + np.array([dx, -4.0])
    for side in ("left", "right"):
        knee = hip + 100.0 * _rotate(up, angles[f"{side}_hip"])
        ankle = knee + 95.0 * _rotate((hip - knee) / 100.0, -angles[f"{side}_knee"])
        elbow = shoulder + 60.0 * _rotate(-up, 30.0 if side == "left" else 40.0)
        wrist = elbow + 55.0 * _rotate((shoulder - elbow) / 60.0, -angles[f"{side}_elbow"])
        points[J[f"{side}_knee"]], points[J[f"{side}_ankle"]] = knee, ankle
        points[J[f"{side}_elbow"]], points[J[f"{side}_wrist"]] = elbow, wrist
    return points


def angles_at(phase: np.ndarray) -> dict[str, np.ndarray]:
    """A smooth motion's chain angles at phases in [0, 1] (asymmetric arms and legs)."""
    p = np.asarray(phase, float)
    return {
        "left_elbow": 90.0 + 35.0 * np.sin(2 * math.pi * p),
        "right_elbow": 100.0 + 25.0 * np.sin(2 * math.pi * p + 0.8),
        "trunk_lean": 30.0 + 12.0 * np.sin(math.pi * p),
        "left_hip": 150.0 - 25.0 * np.sin(2 * math.pi * p + 0.3),
        "right_hip": 145.0 - 20.0 * np.sin(2 * math.pi * p + 0.9),
        "left_knee": 140.0 - 30.0 * np.sin(1.5 * math.pi * p),
        "right_knee": 150.0 - 25.0 * np.sin(1.5 * math.pi * p + 0.4),
    }


def motion(phase: np.ndarray, offsets: dict[str, float | np.ndarray] | None = None) -> np.ndarray:
    """Keypoints [T, 17, 2] of the motion at `phase`, with chain offsets (degrees, scalar or per frame)."""
    table = angles_at(phase)
    for name, value in (offsets or {}).items():
        table[name] = table[name] + value
    return np.stack([figure({k: float(v[t]) for k, v in table.items()}) for t in range(len(phase))])


def reference(frames: int = 30) -> np.ndarray:
    return motion(np.linspace(0.0, 1.0, frames))


def warped_phase(
    rng: np.random.Generator, frames: int = 30, low: float = 0.7, high: float = 1.4
) -> np.ndarray:
    """Phases of a trial of the same motion at a random speed in [low, high] x the reference's, which
    changes smoothly along the motion (a monotone time warp)."""
    knots = rng.uniform(low, high, size=5)
    phases = [0.0]
    while phases[-1] < 1.0:
        speed = float(np.interp(phases[-1], np.linspace(0, 1, 5), knots))
        phases.append(phases[-1] + speed / (frames - 1))
    phases[-1] = 1.0
    return np.array(phases)


def mirrored(keypoints: np.ndarray, width: float = 400.0) -> np.ndarray:
    """The sequence seen in a mirror: x reflected and left/right joints swapped."""
    out = keypoints[:, list(COCO17.flip_permutation())].copy()
    out[..., 0] = width - out[..., 0]
    return out
