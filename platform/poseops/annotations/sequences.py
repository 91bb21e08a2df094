"""Labels-only long sequences (`poseops.capture.synthetic_sequences`) in the internal annotation form.

Every (sequence, view, frame) becomes an image record with no pixels: `file_name` names the sequences
part's labels file (there is no frame to decode; only the `lifting_sequence` task reads this file),
`frame_index` the frame, `camera_id` that view's calibration in `cameras`, and `subject`, `sequence`,
`view`, `task`, `performer` as the bodies' records carry them. One H36M-17 annotation per image
("person_h36m17"): exact projections as `keypoints` (x, y, v), world 3D joints (mm), a `person_id`.

`write_sequence_annotations` writes them to one compact JSON file atomically: the annotate stage's
`data/annotations/sequences.json` (an empty, valid file when the part is not configured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from poseops.errors import DataError
from poseops.skeletons import H36M17
from poseops.storage import read_json, require_published, write_bytes_atomic

PERSON_H36M = 1


def empty_annotations() -> dict[str, Any]:
    from poseops.annotations.internal import category_for

    return {
        "images": [],
        "annotations": [],
        "categories": [category_for(H36M17, PERSON_H36M, "person_h36m17")],
        "cameras": [],
    }


def from_sequence_captures(raw_dir: str | Path, out_folder: Path | None) -> dict[str, Any]:
    """The labels of a published sequences folder, in the internal form (see the module docstring)."""
    from poseops.annotations.internal import relative_to
    from poseops.capture.synthetic_sequences import read_sequence_records

    raw = Path(raw_dir)
    manifest = require_published(raw, "manifest.json")
    if manifest.get("kind") != "sequences":
        raise DataError(f"{raw / 'manifest.json'}: kind {manifest.get('kind')!r} is not sequences")
    calibrations = read_json(raw / manifest["cameras"]["file"])
    labels_file = relative_to(raw / manifest["labels"]["file"], out_folder)
    data = empty_annotations()
    images, annotations, cameras = data["images"], data["annotations"], data["cameras"]
    for record in read_sequence_records(raw):
        joints = record["joints_3d"]
        for view in record["views"]:
            calibration = calibrations.get(record["id"], {}).get(view["name"])
            points = record["keypoints_2d"].get(view["name"])
            if calibration is None or points is None or len(points) != len(joints):
                raise DataError(
                    f"{raw / manifest['labels']['file']}: sequence {record['id']!r} view "
                    f"{view['name']!r} has no camera or not one 2D pose per frame"
                )
            camera_id = len(cameras) + 1
            cameras.append({**calibration, "id": camera_id, "subject": record["subject"]})
            for t, (kp, world) in enumerate(zip(points, joints)):
                image_id = len(images) + 1
                images.append(
                    {
                        "id": image_id,
                        "file_name": labels_file,
                        "frame_index": t,
                        "width": view["width"],
                        "height": view["height"],
                        "sequence": record["id"],
                        "subject": record["subject"],
                        "source": "synthetic",
                        "camera_id": camera_id,
                        "view": view["name"],
                        "task": record["task"],
                        "performer": record["performer"],
                    }
                )
                xs = [p[0] for p in kp]
                ys = [p[1] for p in kp]
                x0, y0 = min(xs), min(ys)
                w, h = max(xs) - x0, max(ys) - y0
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": PERSON_H36M,
                        "keypoints": [float(v) for p in kp for v in p],
                        "num_keypoints": len(kp),
                        "bbox": [x0, y0, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                        "keypoints_3d": [float(v) for p in world for v in p],
                        "person_id": f"{record['id']}:0",
                    }
                )
    return data


def write_sequence_annotations(raw_dir: str | Path | None, out_path: str | Path) -> dict[str, int]:
    """Convert a sequences folder (None, or an empty folder: no part) and write `out_path` atomically;
    returns the counts."""
    from poseops.annotations.internal import validate

    out_path = Path(out_path)
    raw = Path(raw_dir) if raw_dir is not None else None
    if raw is None or not raw.is_dir() or not any(raw.iterdir()):
        data = empty_annotations()
    else:
        data = validate(from_sequence_captures(raw, out_path.parent), str(raw / "manifest.json"))
    write_bytes_atomic(out_path, json.dumps(data, separators=(",", ":")).encode())
    return {"images": len(data["images"]), "annotations": len(data["annotations"])}
