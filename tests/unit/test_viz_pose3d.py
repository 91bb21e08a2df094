"""The lifted-pose plot the demo saves (poseops.viz.pose3d)."""

from __future__ import annotations

import cv2
import numpy as np

from poseops.skeletons import H36M17
from poseops.viz.pose3d import plot_pose_3d


def test_plot_pose_3d_writes_a_picture_of_both_poses(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 300.0, (17, 3))
    path = tmp_path / "pose.png"
    plot_pose_3d(truth + 40.0, truth, H36M17, path)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    red = (image[..., 2] > 150) & (image[..., 1] < 100) & (image[..., 0] < 100)
    assert red.sum() > 50  # the lifted pose is drawn (tab:red), not only the axes
