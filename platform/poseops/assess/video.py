"""Keypoint sequences from video: a pose model on every Nth frame, one person followed through it.

    keypoints_from_video("trainee.mp4", predictor, frame_step=2) -> [T, K, 3] (x, y, score)

`predictor` is any `poseops.serve.Predictor`-shaped object whose `predict(image_bgr, None)` answers
{"people": [{"keypoints": [[x, y, score] x K], "score": s}, ...]} (a bottom-up family such as vmhpe,
`poseops.families.load_predictor(checkpoint)`). The person followed is the one with the largest box
in the first frame, then the one whose box is largest and nearest the previous frame's choice
(area x exp(-centre distance / previous box diagonal)); a frame with nobody keeps score 0 there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from poseops.capture.common import read_frames
from poseops.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def person_box(keypoints: np.ndarray, min_score: float) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of a person's keypoints [K, 3] above `min_score`; None if none is."""
    seen = keypoints[keypoints[:, 2] > min_score, :2]
    if len(seen) == 0:
        return None
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def pick_person(
    people: list[np.ndarray], previous: tuple[float, float, float, float] | None, min_score: float
) -> int | None:
    """Index of the person to follow among `people` ([K, 3] each): the largest box, weighted by
    nearness to the `previous` box when there is one; None when nobody has a keypoint above `min_score`."""
    best, best_value = None, -1.0
    for index, keypoints in enumerate(people):
        box = person_box(keypoints, min_score)
        if box is None:
            continue
        area = max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0)
        value = area
        if previous is not None:
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            before = np.array([(previous[0] + previous[2]) / 2, (previous[1] + previous[3]) / 2])
            diagonal = max(math.hypot(previous[2] - previous[0], previous[3] - previous[1]), 1.0)
            value = area * math.exp(-float(np.linalg.norm(centre - before)) / diagonal)
        if value > best_value:
            best, best_value = index, value
    return best


class Follower:
    """Builds the followed person's sequence from one pose-model answer per sampled frame."""

    def __init__(self, num_keypoints: int, min_score: float):
        self.num_keypoints, self.min_score = num_keypoints, min_score
        self.frames: list[np.ndarray] = []
        self.previous: tuple[float, float, float, float] | None = None

    def add(self, answer: dict[str, Any]) -> None:
        """One frame's {"people": [{"keypoints": [[x, y, score] x K]}, ...]}."""
        people = [
            np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)
            for p in answer.get("people", [])
        ]
        people = [p for p in people if len(p) == self.num_keypoints]
        chosen = pick_person(people, self.previous, self.min_score)
        if chosen is None:
            self.frames.append(np.zeros((self.num_keypoints, 3)))
        else:
            self.frames.append(people[chosen])
            self.previous = person_box(people[chosen], self.min_score)

    def sequence(self, label: str) -> np.ndarray:
        if not self.frames:
            raise DataError(f"{label}: no frame could be read")
        return np.stack(self.frames)


def sampled_frames(
    path: str | Path, frame_step: int = 1, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Every `frame_step`-th frame (BGR uint8) of a video file; DataError naming the file if it cannot
    be opened or read (`poseops.capture.common.read_frames`) or holds more than `max_frames` sampled frames."""
    sampled = 0
    for index, image in enumerate(read_frames(path)):
        if index % frame_step:
            continue
        if max_frames is not None and sampled >= max_frames:
            raise DataError(f"{path}: more than {max_frames} sampled frames (assess.max_frames)")
        sampled += 1
        yield image


def keypoints_from_video(
    path: str | Path,
    predictor: Any,
    num_keypoints: int,
    frame_step: int = 1,
    min_score: float = 0.05,
    max_frames: int | None = None,
) -> np.ndarray:
    """[T, K, 3] (x, y, score) of the followed person on every `frame_step`-th frame of the video."""
    follower = Follower(num_keypoints, min_score)
    for image in sampled_frames(path, frame_step, max_frames):
        follower.add(predictor.predict(image, None))
    return follower.sequence(str(path))
