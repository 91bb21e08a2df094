"""Lifted 3D poses drawn with matplotlib (Agg): a pose beside its ground truth, in the camera frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poseops.skeletons import Skeleton


def plot_pose_3d(
    joints_mm: np.ndarray, truth_mm: np.ndarray, skeleton: Skeleton, path: Path
) -> None:
    """A 3D plot (camera frame, y down drawn up) of a lifted pose [K, 3] mm beside its ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(5, 5))
    axes = figure.add_subplot(projection="3d")
    for pose, colour, label in (
        (truth_mm, "tab:gray", "ground truth"),
        (joints_mm, "tab:red", "lifted"),
    ):
        for a, b in skeleton.edges:
            axes.plot(
                *zip(pose[a][[0, 2, 1]] * [1, 1, -1], pose[b][[0, 2, 1]] * [1, 1, -1]), c=colour
            )
        axes.scatter(pose[:, 0], pose[:, 2], -pose[:, 1], c=colour, s=8, label=label)
    axes.set_xlabel("x (mm)"), axes.set_ylabel("z (mm)"), axes.set_zlabel("-y (mm)")
    axes.legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)
