"""The internal form -> COCO keypoints JSON (what pycocotools and other tools read).

Images keep their file names, made relative to the exported file (absolute where that is not
possible), and the optional fields of the internal form (COCO readers ignore fields they do not
know); `cameras` stays as a top-level list. Written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poseops.annotations.internal import (
    annotations_file,
    load_annotations,
    relative_to,
    resolve_image_path,
)
from poseops.storage import filesystem, write_json_atomic

COCO_ANNOTATION_FIELDS = (
    "id",
    "image_id",
    "category_id",
    "keypoints",
    "num_keypoints",
    "bbox",
    "area",
    "iscrowd",
)


def to_coco(
    data: dict[str, Any], annotations_path: str | Path, out_folder: Path | None
) -> dict[str, Any]:
    """COCO dict of internal-form `data` read from `annotations_path`, for a file in `out_folder`."""
    images = []
    for img in data["images"]:
        path = resolve_image_path(annotations_path, img)
        images.append({**img, "file_name": relative_to(path, out_folder)})
    annotations = []
    for ann in data["annotations"]:
        record = {k: ann[k] for k in COCO_ANNOTATION_FIELDS}
        record.update({k: v for k, v in ann.items() if k not in record})
        annotations.append(record)
    categories = [
        {"supercategory": "hand" if c["name"].startswith("hand") else "person", **c}
        for c in data["categories"]
    ]
    out = {
        "info": {
            "description": "exported by poseops",
            "sources": data.get("info", {}).get("sources", []),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    if data.get("cameras"):
        out["cameras"] = data["cameras"]
    return out


def export_coco(url: str | Path, out_file: str | Path) -> dict[str, int]:
    """Write the internal annotations at `url` (a file or a published import folder) as COCO JSON."""
    path = annotations_file(url)
    data = load_annotations(path)
    fs, local = filesystem(out_file)
    from fsspec.implementations.local import LocalFileSystem

    out_folder = Path(local).parent if isinstance(fs, LocalFileSystem) else None
    write_json_atomic(out_file, to_coco(data, path, out_folder))
    return {
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "categories": len(data["categories"]),
    }
