"""Synthetic body captures (`poseops.capture.synthetic_bodies`) in the internal annotation form.

Every (sequence, view, kept frame) becomes an image: `file_name` is the view's MP4, `frame_index` the
kept frame, `group` = "<sequence>:<frame>" joins the views of one instant, `camera_id` points at that
view's calibration in the top-level `cameras` list, and `task`, `performer`, `frame_number` (the
30 fps capture frame) come along. Every person seen in a view gets two annotations from one motion:
COCO-17 (category "person") and H36M-17 ("person_h36m17"), each with its training keypoints (label
noise applied, if configured), `keypoints_clean` (exact projections, for evaluation), world 3D joints
(mm) and a `person_id` shared across views and forms. A person with no joint inside a view is left out
of that view.

Images are listed view by view within a sequence, so a reader decoding videos meets each file's
frames together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poseops.capture.bodies import COCO17_FROM_BODY, H36M17_FROM_BODY
from poseops.capture.synthetic_bodies import read_sequences
from poseops.errors import DataError
from poseops.skeletons import COCO17, H36M17
from poseops.storage import read_json, require_published

PERSON, PERSON_H36M = 1, 2  # category ids in this part (merge() renumbers)


def _categories() -> list[dict[str, Any]]:
    from poseops.annotations.internal import category_for

    return [
        category_for(COCO17, PERSON, "person"),
        category_for(H36M17, PERSON_H36M, "person_h36m17"),
    ]


def _annotation(
    category_id: int,
    keypoints: list,
    clean: list,
    joints_3d: np.ndarray,
    person: dict,
    person_id: str,
) -> dict:
    flat = [float(v) for point in keypoints for v in point]
    x, y, w, h = person["bbox"]
    return {
        "category_id": category_id,
        "keypoints": flat,
        "keypoints_clean": [float(v) for point in clean for v in point],
        "num_keypoints": sum(1 for v in flat[2::3] if v > 0),
        "bbox": [x, y, w, h],
        "bbox_raw": list(person["bbox_raw"]),
        "area": w * h,
        "iscrowd": 0,
        "keypoints_3d": [round(float(v), 3) for v in joints_3d.reshape(-1)],
        "person_id": person_id,
    }


def from_synthetic_bodies(raw_dir: str | Path, out_folder: Path | None) -> dict[str, Any]:
    """The labels of a published body capture folder, in the internal form (see the module docstring)."""
    from poseops.annotations.internal import relative_to

    raw = Path(raw_dir)
    manifest = require_published(raw, "manifest.json")
    if manifest.get("kind") != "body":
        raise DataError(
            f"{raw / 'manifest.json'}: kind {manifest.get('kind')!r} is not a body capture"
        )
    calibrations = read_json(raw / manifest["cameras"]["file"])
    entries = {entry["id"]: entry for entry in manifest["sequences"]}
    images, annotations, cameras = [], [], []
    for record in read_sequences(raw):
        entry = entries.get(record["id"])
        if entry is None:
            raise DataError(
                f"{raw / manifest['labels']['file']}: sequence {record['id']!r} is not in the manifest"
            )
        people = {p["index"]: p for p in record["people"]}
        for view in entry["views"]:
            video = raw / view["file"]
            if not video.is_file():
                raise DataError(f"{video}: capture listed in {raw / 'manifest.json'} is missing")
            calibration = calibrations.get(record["id"], {}).get(view["name"])
            if calibration is None:
                raise DataError(
                    f"{raw / manifest['cameras']['file']}: no camera for {record['id']}/{view['name']}"
                )
            camera_id = len(cameras) + 1
            cameras.append(
                {
                    **calibration,
                    "id": camera_id,
                    "subject": entry["subject"],
                    "width": view["width"],
                    "height": view["height"],
                }
            )
            for frame in record["frames"]:
                labels = frame["views"].get(view["name"])
                if labels is None:
                    raise DataError(
                        f"{raw / manifest['labels']['file']}: {record['id']} frame "
                        f"{frame['frame_index']} has no labels for view {view['name']!r}"
                    )
                image_id = len(images) + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": relative_to(video, out_folder),
                        "frame_index": frame["frame_index"],
                        "width": view["width"],
                        "height": view["height"],
                        "sequence": record["id"],
                        "subject": entry["subject"],
                        "source": "synthetic",
                        "camera_id": camera_id,
                        "view": view["name"],
                        "group": f"{record['id']}:{frame['frame_index']}",
                        "task": record["task"],
                        "performer": record["performer"],
                        "frame_number": frame["capture_frame"],
                    }
                )
                world = {
                    p["person_id"]: np.asarray(p["keypoints_3d"], dtype=np.float64)
                    for p in frame["people"]
                }
                for person in labels["people"]:
                    person_id = f"{record['id']}:{person['person_id']}"
                    if not any(point[2] > 0 for point in person["keypoints"]):
                        continue
                    joints = world[person_id]
                    extra = {
                        "role": person["role"],
                        "activity": people[person["person_id"]]["activity"],
                    }
                    for category_id, keypoints, clean, index in (
                        (PERSON, person["keypoints"], person["keypoints_clean"], COCO17_FROM_BODY),
                        (
                            PERSON_H36M,
                            person["keypoints_h36m"],
                            person["keypoints_h36m_clean"],
                            H36M17_FROM_BODY,
                        ),
                    ):
                        annotation = _annotation(
                            category_id, keypoints, clean, joints[index], person, person_id
                        )
                        annotations.append(
                            {
                                "id": len(annotations) + 1,
                                "image_id": image_id,
                                **annotation,
                                **extra,
                            }
                        )
    return {
        "images": images,
        "annotations": annotations,
        "categories": _categories(),
        "cameras": cameras,
        "info": {"sources": ["synthetic_bodies"]},
    }
