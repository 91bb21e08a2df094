"""Tables 1-2 of Zhang, He, Wu, 2025, "VMHPE", measured on synthetic body labels read back from disk through the data API
(capture folder -> internal annotation form), never from the generator's internals.

Front view, the performer's COCO-17 labels (`keypoints_clean`: the written exact projections), the first
200 expert frames of each task: elbow and trunk-lean means within 3 deg of Table 1, SDs within 25 %, and
the mean displacement between kept frames (scaled to 2160 rows) within Table 2's mean +- 1 SD.
Wrist angles are not tested (COCO-17 has no hand point).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from poseops.annotations.internal import build_annotations, load_annotations
from poseops.capture.bodies import TASKS
from poseops.capture.synthetic_bodies import front_statistics, write_body_captures
from poseops.config import BodyCaptureParams, CaptureParams

FRAMES_PER_TASK = 200
SIZE = 256
PARAMS = CaptureParams(
    seed=11,
    hands=None,
    bodies=BodyCaptureParams(
        sequences=70,
        image_size=SIZE,
        views=1,
        people=(1, 1),
        performers=["expert"],
        actions=[],
        occluders=(0, 0),
    ),
)


@pytest.fixture(scope="module")
def front_expert_frames(tmp_path_factory) -> dict[str, tuple[np.ndarray, list[str]]]:
    """task -> (COCO-17 keypoints [N, 17, 2] px, sequence id per row), first 200 expert front frames."""
    root = tmp_path_factory.mktemp("stats")
    write_body_captures(root / "raw" / "bodies", PARAMS)
    build_annotations(root / "raw", [], root / "labels.json")
    data = load_annotations(root / "labels.json")
    person = next(c["id"] for c in data["categories"] if c["name"] == "person")
    images = {img["id"]: img for img in data["images"]}
    rows: dict[str, list] = defaultdict(list)
    for ann in data["annotations"]:  # image order: sequence, view, frame
        img = images[ann["image_id"]]
        if (
            ann["category_id"] == person
            and img["view"] == "front"
            and img["performer"] == "expert"
            and ann.get("role") == "performer"
            and len(rows[img["task"]]) < FRAMES_PER_TASK
        ):
            rows[img["task"]].append(
                (np.asarray(ann["keypoints_clean"], float).reshape(17, 2), img["sequence"])
            )
    return {task: (np.stack([k for k, _ in r]), [s for _, s in r]) for task, r in rows.items()}


@pytest.mark.parametrize("code", sorted(TASKS))
def test_front_view_statistics_match_tables_1_and_2(front_expert_frames, code):
    spec = TASKS[code]
    keypoints, sequences = front_expert_frames[code]
    assert len(keypoints) == FRAMES_PER_TASK, f"{code}: only {len(keypoints)} expert front frames"
    stats = front_statistics(keypoints, sequences, SIZE)
    assert abs(stats["elbow_mean"] - spec.elbow[0]) <= 3.0, stats
    assert abs(stats["lean_mean"] - spec.lean[0]) <= 3.0, stats
    assert abs(stats["elbow_sd"] / spec.elbow[1] - 1) <= 0.25, stats
    assert abs(stats["lean_sd"] / spec.lean[1] - 1) <= 0.25, stats
    mean, sd, _ = spec.displacement
    assert mean - sd <= stats["displacement_mean"] <= mean + sd, stats
