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
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from poseops.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def person_box(keypoints: np.ndarray, min_score: float) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of a person's keypoints [K, 3] above `min_score`; None if none is."""
    seen = keypoints[keypoints[:, 2] > min_score, :2]
    if len(seen) == 0:
        return None
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def pick_person(people: list[np.ndarray], previous: tuple[float, float, float, float] | None,
                min_score: float) -> int | None:
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


def keypoints_from_video(path: str | Path, predictor: Any, num_keypoints: int, frame_step: int = 1,
                         min_score: float = 0.05, max_frames: int | None = None) -> np.ndarray:
    """[T, K, 3] (x, y, score) of the followed person on every `frame_step`-th frame of the video."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video")
    frames, previous, index = [], None, 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % frame_step == 0:
                if max_frames is not None and len(frames) >= max_frames:
                    raise DataError(f"{path}: more than {max_frames} sampled frames (assess.max_frames)")
                answer = predictor.predict(image, None)
                people = [np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3) for p in answer.get("people", [])]
                people = [p for p in people if len(p) == num_keypoints]
                chosen = pick_person(people, previous, min_score)
                if chosen is None:
                    frames.append(np.zeros((num_keypoints, 3)))
                else:
                    frames.append(people[chosen])
                    previous = person_box(people[chosen], min_score)
            index += 1
    finally:
        capture.release()
    if not frames:
        raise DataError(f"{path}: no frame could be read")
    return np.stack(frames)
