"""Synthetic MP4s of keypoint sequences (stick figures drawn with OpenCV), for the video path of assess."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from poseops.skeletons import COCO17


def write_stick_video(
    path: Path,
    keypoints: np.ndarray,
    size: tuple[int, int] = (320, 240),
    scale: float = 0.5,
    fps: float = 3.0,
) -> Path:
    """An MP4 of the [T, 17, 2|3] sequence drawn as a thick stick figure (points scaled by `scale`)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in keypoints[..., :2] * scale:
        image = np.full((height, width, 3), (90, 110, 100), np.uint8)
        for a, b in COCO17.edges:
            cv2.line(
                image,
                tuple(int(v) for v in frame[a]),
                tuple(int(v) for v in frame[b]),
                (40, 200, 240),
                5,
                cv2.LINE_AA,
            )
        for point in frame:
            cv2.circle(image, tuple(int(v) for v in point), 4, (240, 240, 240), -1, cv2.LINE_AA)
        writer.write(image)
    writer.release()
    return path
