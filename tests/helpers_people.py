"""Multi-person synthetic images for the vmhpe tests.

`people_images` is `poseops.capture.people.people_images` when that module exists; until then (and as
its fallback) a small local stick-figure renderer with the same contract:

    people_images(seed, count, size=256, people_per_image=(2, 3)) -> [(image_bgr uint8 [S,S,3], people)]
    people[i] = {"keypoints": float32 [17,2] COCO-17 px, "visibility": int [17], "bbox": [x, y, w, h]}
"""

from __future__ import annotations

import cv2
import numpy as np

# A frontal body, unit height 1, origin at the pelvis centre; x to the image right (= the person's left).
_TEMPLATE = np.array(
    [
        [0.0, -0.80],  # nose
        [0.035, -0.83],
        [-0.035, -0.83],  # left / right eye
        [0.07, -0.81],
        [-0.07, -0.81],  # left / right ear
        [0.16, -0.62],
        [-0.16, -0.62],  # shoulders
        [0.20, -0.36],
        [-0.20, -0.36],  # elbows
        [0.22, -0.12],
        [-0.22, -0.12],  # wrists
        [0.10, 0.0],
        [-0.10, 0.0],  # hips
        [0.11, 0.30],
        [-0.11, 0.30],  # knees
        [0.12, 0.60],
        [-0.12, 0.60],  # ankles
    ]
)
_LIMBS = (
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
    (5, 6),
    (11, 12),
    (5, 11),
    (6, 12),
)
_LEFT = {(5, 7), (7, 9), (11, 13), (13, 15)}
_RIGHT = {(6, 8), (8, 10), (12, 14), (14, 16)}


def _rotate(vec: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ vec


def _pose(rng: np.random.Generator, height: float, origin: np.ndarray) -> np.ndarray:
    """[17,2] px: the template with random arm/leg swings."""
    points = _TEMPLATE.copy()
    for shoulder, elbow, wrist in ((5, 7, 9), (6, 8, 10)):
        upper = _rotate(points[elbow] - points[shoulder], rng.uniform(-70, 70))
        lower = _rotate(points[wrist] - points[elbow], rng.uniform(-60, 60))
        points[elbow] = points[shoulder] + upper
        points[wrist] = points[elbow] + _rotate(lower, rng.uniform(-40, 40))
    for hip, knee, ankle in ((11, 13, 15), (12, 14, 16)):
        thigh = _rotate(points[knee] - points[hip], rng.uniform(-25, 25))
        shin = _rotate(points[ankle] - points[knee], rng.uniform(-20, 20))
        points[knee] = points[hip] + thigh
        points[ankle] = points[knee] + shin
    lean = rng.uniform(-12, 12)
    points = np.stack([_rotate(p, lean) for p in points])
    return (points * height + origin).astype(np.float32)


def _render(image: np.ndarray, kp: np.ndarray, rng: np.random.Generator, height: float) -> None:
    thick = max(2, int(round(height * 0.045)))
    body = tuple(int(v) for v in rng.integers(60, 200, 3))
    left, right = (40, 40, 230), (230, 120, 40)
    for a, b in _LIMBS:
        color = left if (a, b) in _LEFT else right if (a, b) in _RIGHT else body
        cv2.line(
            image,
            tuple(np.round(kp[a]).astype(int)),
            tuple(np.round(kp[b]).astype(int)),
            color,
            thick,
            cv2.LINE_AA,
        )
    head = kp[0] + np.array([0.0, -0.01 * height])
    cv2.circle(
        image,
        tuple(np.round(head).astype(int)),
        int(round(0.075 * height)),
        (180, 200, 230),
        -1,
        cv2.LINE_AA,
    )
    for k, color in ((1, (0, 160, 0)), (2, (160, 0, 160)), (3, (0, 90, 0)), (4, (90, 0, 90))):
        cv2.circle(
            image, tuple(np.round(kp[k]).astype(int)), max(1, thick // 2), color, -1, cv2.LINE_AA
        )
    cv2.circle(
        image, tuple(np.round(kp[0]).astype(int)), max(1, thick // 2), (0, 0, 120), -1, cv2.LINE_AA
    )


def _local_people_images(seed: int, count: int, size: int = 256, people_per_image=(2, 3)):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        image = cv2.GaussianBlur(image, (5, 5), 0) + np.uint8(40)
        n = int(rng.integers(people_per_image[0], people_per_image[1] + 1))
        slots = rng.permutation(n * 2)[
            :n
        ]  # columns of a 2n grid: people side by side, little overlap
        people = []
        for slot in sorted(slots):
            height = rng.uniform(0.42, 0.58) * size
            cx = (slot + 0.5) / (2 * n) * size + rng.uniform(-0.03, 0.03) * size
            cy = rng.uniform(0.48, 0.62) * size
            kp = _pose(rng, height, np.array([cx, cy]))
            _render(image, kp, rng, height)
            visible = ((kp >= 0) & (kp < size)).all(1)
            lo, hi = kp[visible].min(0), kp[visible].max(0)
            pad = 0.08 * height
            x0, y0 = np.clip(lo - pad, 0, size), np.clip(hi + pad, 0, size)
            people.append(
                {
                    "keypoints": kp,
                    "visibility": np.where(visible, 2, 0).astype(np.int64),
                    "bbox": [
                        float(x0[0]),
                        float(x0[1]),
                        float(y0[0] - x0[0]),
                        float(y0[1] - x0[1]),
                    ],
                }
            )
        out.append((image, people))
    return out


def people_images(seed: int, count: int, size: int = 256, people_per_image=(2, 3)):
    try:
        from poseops.capture.people import people_images as library_people_images
    except ImportError:
        return _local_people_images(seed, count, size, people_per_image)
    return library_people_images(seed, count, size=size, people_per_image=people_per_image)
