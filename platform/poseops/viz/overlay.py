"""Keypoints drawn over images (OpenCV, BGR), and grids of samples for a person to check labels."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from poseops.skeletons import Skeleton

# BGR colours; a limb takes the colour of its group (finger, arm side), else cycles.
PALETTE = [
    (0, 0, 255),
    (0, 165, 255),
    (0, 255, 255),
    (0, 255, 0),
    (255, 128, 0),
    (255, 0, 255),
    (255, 255, 255),
]
OCCLUDED = (160, 160, 160)


def _colour_of(index: int, skeleton: Skeleton) -> tuple[int, int, int]:
    for g, members in enumerate(skeleton.groups.values()):
        if index in members:
            return PALETTE[g % len(PALETTE)]
    return PALETTE[index % len(PALETTE)]


def draw_keypoints(
    image_bgr: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Skeleton,
    visibility: np.ndarray | None = None,
    color: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw edges and joints in place and return the image. keypoints [K,2|3]; visibility [K] (COCO 0/1/2):
    0 is not drawn, 1 (labelled but occluded) is drawn hollow and grey."""
    points = np.asarray(keypoints, dtype=np.float64)[:, :2]
    vis = np.full(len(points), 2) if visibility is None else np.asarray(visibility)
    scale = max(1, round(max(image_bgr.shape[:2]) / 200))
    for a, b in skeleton.edges:
        if vis[a] > 0 and vis[b] > 0:
            colour = color or (_colour_of(b, skeleton) if vis[a] == 2 and vis[b] == 2 else OCCLUDED)
            cv2.line(image_bgr, _pt(points[a]), _pt(points[b]), colour, scale, cv2.LINE_AA)
    for i, p in enumerate(points):
        if vis[i] == 0:
            continue
        colour = color or _colour_of(i, skeleton)
        if vis[i] == 1:
            cv2.circle(image_bgr, _pt(p), 2 * scale, OCCLUDED, 1, cv2.LINE_AA)
        else:
            cv2.circle(image_bgr, _pt(p), 2 * scale, colour, -1, cv2.LINE_AA)
    return image_bgr


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def sample_grid(
    images_bgr: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray],
    skeleton: Skeleton,
    visibility: Sequence[np.ndarray] | None = None,
    cols: int = 4,
    cell: int = 192,
) -> np.ndarray:
    """Overlays of several samples tiled into one BGR image, each resized to cell x cell."""
    n = len(images_bgr)
    if n == 0:
        return np.zeros((cell, cell, 3), np.uint8)
    rows = (n + cols - 1) // cols
    grid = np.zeros((rows * cell, min(n, cols) * cell, 3), np.uint8)
    for i, (img, kp) in enumerate(zip(images_bgr, keypoints)):
        h, w = img.shape[:2]
        zoom = cell / max(h, w)
        tile = cv2.resize(
            np.ascontiguousarray(img), (max(1, round(w * zoom)), max(1, round(h * zoom)))
        )
        pts = np.asarray(kp, dtype=np.float64)[:, :2] * zoom
        draw_keypoints(tile, pts, skeleton, None if visibility is None else visibility[i])
        r, c = divmod(i, cols)
        grid[r * cell : r * cell + tile.shape[0], c * cell : c * cell + tile.shape[1]] = tile
    return grid
