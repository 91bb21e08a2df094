"""Reading keypoint sequences for assessment: JSON files (or request bodies) and videos.

JSON: {"skeleton": "coco17", "keypoints": [[[x, y(, score|visibility)] x K] x T]} or the bare list.
Videos (.mp4, .avi, .mov, .mkv) go through a pose model (`poseops.assess.video`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from poseops.assess.core import AssessInputError
from poseops.assess.video import VIDEO_SUFFIXES, keypoints_from_video
from poseops.config import AssessVideoParams
from poseops.errors import DataError
from poseops.skeletons import get_skeleton


def sequence_from_json(obj: Any, label: str, max_frames: int) -> tuple[np.ndarray, str | None]:
    """(keypoints [T, K, 2|3] float, skeleton name or None) from a decoded JSON value."""
    skeleton = None
    if isinstance(obj, dict):
        if "keypoints" not in obj:
            raise AssessInputError(
                f"{label}: field 'keypoints' is missing (expected {{\"keypoints\": [[[x, y, s], ...], ...]}})"
            )
        skeleton = obj.get("skeleton")
        if skeleton is not None and not isinstance(skeleton, str):
            raise AssessInputError(f"{label}: field 'skeleton' must be a name such as 'coco17'")
        obj = obj["keypoints"]
    if not isinstance(obj, list):
        raise AssessInputError(f"{label}: keypoints must be a list of frames")
    if len(obj) > max_frames:
        raise AssessInputError(
            f"{label}: {len(obj)} frames is over the limit of {max_frames} (assess.max_frames)"
        )
    try:
        array = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssessInputError(
            f"{label}: keypoints must be [frames][keypoints][2 or 3] numbers, same size in every frame"
        ) from None
    if array.ndim != 3:
        raise AssessInputError(
            f"{label}: keypoints have shape {list(array.shape)}; expected [frames, keypoints, 2 or 3]"
        )
    return array, skeleton


def load_sequence(
    path: str | Path,
    max_frames: int,
    video: AssessVideoParams | None = None,
    predictor: Callable[[], Any] | None = None,
) -> tuple[np.ndarray, str | None]:
    """(keypoints, skeleton name or None) of a JSON file or a video; `predictor()` gives the pose model
    for videos (default: `poseops.families.load_predictor(video.checkpoint)`)."""
    path = Path(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        video = video or AssessVideoParams()
        if predictor is None:
            model = load_video_predictor(video.checkpoint)
        else:
            model = predictor()
        skeleton = getattr(model, "skeleton", None) or "coco17"
        keypoints = keypoints_from_video(
            path,
            model,
            get_skeleton(skeleton).num_keypoints,
            video.frame_step,
            video.min_score,
            max_frames,
        )
        return keypoints, skeleton
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return sequence_from_json(obj, str(path), max_frames)


def load_video_predictor(checkpoint: str | Path) -> Any:
    """The pose model of a published checkpoint folder (a bottom-up family: vmhpe)."""
    from poseops.errors import CheckpointError
    from poseops.families import get_family, load_predictor

    folder = Path(checkpoint)
    if not (folder / "manifest.json").is_file():
        raise CheckpointError(
            f"{folder}: no published checkpoint (manifest.json) to predict keypoints from videos; "
            "train one (dvc repro train@vmhpe) or pass --checkpoint"
        )
    predictor = load_predictor(folder)
    family = get_family(predictor.name.removeprefix("poseops-"))
    if family.task != "bottomup_image":
        raise CheckpointError(
            f"{folder}: family {family.name!r} is not a whole-image body model; use vmhpe"
        )
    predictor.skeleton = family.skeleton
    return predictor


def check_same_skeleton(reference: str | None, trial: str | None, default: str) -> str:
    """The skeleton both sequences use (a sequence that names none uses `default`); they must agree."""
    names = (reference or default, trial or default)
    if names[0] != names[1]:
        raise AssessInputError(
            f"reference and trial use different skeletons ({names[0]!r} vs {names[1]!r})"
        )
    try:
        get_skeleton(names[0])
    except KeyError as exc:
        raise AssessInputError(f"skeleton: {exc.args[0]}") from None
    return names[0]
