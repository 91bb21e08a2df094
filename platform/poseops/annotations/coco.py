"""COCO keypoints JSON -> the internal form (any skeleton its `categories` declare).

People with no labelled keypoint and crowd regions are kept: they are ignore information for
bottom-up training and for COCO AP. The importers issue widens this to every real format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poseops.annotations.internal import relative_to
from poseops.errors import DataError
from poseops.storage import read_json


def read_coco(file: str | Path, images_dir: str | Path | None, out_folder: Path) -> dict[str, Any]:
    file = Path(file)
    data = read_json(file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{file}: missing or malformed {key!r} list")
    folder = Path(images_dir) if images_dir else file.parent
    images = []
    for img in data["images"]:
        if "file_name" not in img or "id" not in img:
            raise DataError(f"{file}: image record {img.get('id')!r} lacks id or file_name")
        images.append(
            {
                "id": img["id"],
                "file_name": relative_to(folder / img["file_name"], out_folder),
                "frame_index": None,
                "width": img.get("width"),
                "height": img.get("height"),
                "sequence": img.get("vid_id"),
                "subject": None,
                "source": f"coco:{file.name}",
            }
        )
    categories = [
        {"id": c["id"], "name": c.get("name", "person"), "keypoints": list(c.get("keypoints", [])),
         "skeleton": [list(e) for e in c.get("skeleton", [])]}
        for c in data["categories"]
    ]
    annotations = []
    for ann in data["annotations"]:
        record = {k: ann[k] for k in ("id", "image_id", "category_id", "keypoints", "bbox") if k in ann}
        missing = {"id", "image_id", "category_id", "keypoints", "bbox"} - set(record)
        if missing:
            raise DataError(f"{file}: annotation {ann.get('id')!r} lacks {', '.join(sorted(missing))}")
        x, y, w, h = record["bbox"]
        record.update(
            num_keypoints=ann.get("num_keypoints", sum(1 for v in ann["keypoints"][2::3] if v > 0)),
            area=ann.get("area", w * h),
            iscrowd=ann.get("iscrowd", 0),
        )
        annotations.append(record)
    return {"images": images, "annotations": annotations, "categories": categories, "info": {"sources": [str(file)]}}
