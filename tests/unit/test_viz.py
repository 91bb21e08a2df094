"""Overlays: keypoints, edges and visibility drawn where they should be; grids tile and encode."""

from __future__ import annotations

import cv2
import numpy as np

from poseops.skeletons import HAND21
from poseops.viz.overlay import draw_keypoints, sample_grid


def _hand(size: int = 128) -> np.ndarray:
    angles = np.linspace(0.2, 2.9, 21)
    radii = np.linspace(10, 50, 21)
    return np.stack([size / 2 + radii * np.cos(angles), size / 2 + radii * np.sin(angles)], 1)


def test_draw_marks_labelled_points_only():
    kp = _hand()
    vis = np.full(21, 2)
    vis[5] = 0
    vis[9] = 1
    canvas = np.zeros((128, 128, 3), np.uint8)
    out = draw_keypoints(canvas.copy(), kp, HAND21, visibility=vis)
    for i in (0, 4, 12, 20):
        x, y = np.round(kp[i]).astype(int)
        assert out[y, x].any(), f"keypoint {i} not drawn"
    alone = draw_keypoints(
        canvas.copy(), kp[[5]], HAND21.__class__("one", ("a",), ()), visibility=np.array([0])
    )
    assert not alone.any()  # v=0 draws nothing
    assert out.shape == canvas.shape and out.dtype == np.uint8


def test_keypoints_with_visibility_column_and_colour():
    kp = np.concatenate([_hand(), np.full((21, 1), 2.0)], 1)
    out = draw_keypoints(np.zeros((128, 128, 3), np.uint8), kp, HAND21, color=(0, 0, 255))
    drawn = out.reshape(-1, 3)[out.reshape(-1, 3).any(1)]
    assert len(drawn) > 50
    assert (drawn[:, 2] >= drawn[:, 0]).all()  # red only


def test_sample_grid_tiles_and_encodes():
    images = [np.full((96, 96, 3), 40 * i, np.uint8) for i in range(5)]
    keypoints = [_hand(96) * 0.75 for _ in range(5)]
    grid = sample_grid(images, keypoints, HAND21, cols=3)
    assert grid.shape[0] == 2 * grid.shape[1] // 3 and grid.ndim == 3
    ok, png = cv2.imencode(".png", grid)
    assert ok and len(png) > 100


def test_training_panels_give_each_series_its_own_axis(tmp_path):
    import cv2

    from poseops.viz.curves import plot_panels

    path = plot_panels(
        tmp_path / "c.png",
        [0, 1, 2],
        {"train_loss": [19.0, 15.0, 12.0], "val_pck": [0.25, 0.4, 0.5]},
        "epoch",
        "training",
    )
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] >= 2 * image.shape[0]  # two panels side by side
