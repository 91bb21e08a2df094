"""COCO keypoints JSON -> the internal form (any skeleton its `categories` declare).

A COCO-WholeBody file's hands (`lefthand_kpts`, `righthand_kpts`) and faces (`face_kpts`) become
annotations of a `hand` category (hand21) and a `face` category (face68) beside the bodies, so hand
and face families can use them (its feet, a set poseops does not have, are a warning). People with no labelled keypoint
and crowd regions are kept: they are ignore information for
bottom-up training and for COCO AP (a crowd's box is also added to its image's `ignore_regions`).
Ids are the file's own, so errors name the records as the user knows them; `merge` renumbers.
`coco_to_internal` is shared by the COCO-style forms of FreiHAND and PoseTrack.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.skeletons import FACE68, HAND21
from poseops.storage import read_json

ANNOTATION_FIELDS = ("id", "image_id", "category_id", "keypoints")
# a missing bbox or area is a repair (poseops.annotations.checks), not a refusal
OPTIONAL_FIELDS = (
    "bbox",
    "area",
    "iscrowd",
    "num_keypoints",
    "track_id",
    "keypoints_3d",
    "person_id",
    "bbox_head",
    # the internal form's own fields, in a file `poseops data export coco` wrote: kept, so an export
    # imports back to the same labels (tests/unit/test_round_trip.py)
    "keypoints_clean",
    "side",
    "source_annotation_id",
    "center",
    "scale",
    "bbox_raw",
    "area_flagged",
    "area_source",
)
# the internal form's image fields (poseops.annotations.internal) a COCO-like file may carry
INTERNAL_IMAGE_FIELDS = (
    "frame_index",
    "subject",
    "camera_id",
    "view",
    "group",
    "ignore_regions",
    "ignore_polygons",
    "task",
    "performer",
    "split",
    "frame_number",
)


def image_size(path: Path) -> tuple[int | None, int | None]:
    """(width, height) read from an image file's header; (None, None) if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None, None


def read_coco_json(file: str | Path) -> dict[str, Any]:
    """A COCO-style JSON with its three lists checked (DataError naming the file otherwise)."""
    data = read_json(file)
    if not isinstance(data, dict):
        raise DataError(f"{file}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{file}: missing or malformed {key!r} list")
    return data


def coco_to_internal(
    data: dict[str, Any],
    file: Path,
    images_dir: Path,
    out_folder: Path | None,
    source: str,
    image_extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda img: {},
) -> dict[str, Any]:
    """The internal form of parsed COCO-style `data` read from `file`, images under `images_dir`.

    image_extra(image record) -> fields to add to (or override in) that image's internal record.
    """
    images = []
    for img in data["images"]:
        if not isinstance(img, dict) or "file_name" not in img or "id" not in img:
            raise DataError(
                f"{file}: image record {img.get('id') if isinstance(img, dict) else img!r} lacks id or file_name"
            )
        path = images_dir / img["file_name"]
        width, height = img.get("width"), img.get("height")
        if (width is None or height is None) and path.is_file():
            width, height = image_size(path)
        images.append(
            {
                "id": img["id"],
                "file_name": relative_to(path, out_folder),
                "frame_index": None,
                "width": width,
                "height": height,
                "sequence": img.get("sequence", img.get("vid_id")),
                "subject": None,
                "source": source,
                **{k: img[k] for k in INTERNAL_IMAGE_FIELDS if img.get(k) is not None},
                **image_extra(img),
            }
        )
    categories = []
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c:
            raise DataError(f"{file}: category record {c!r} lacks an id")
        category = {
            "id": c["id"],
            "name": c.get("name", "person"),
            "keypoints": list(c.get("keypoints") or []),
            "skeleton": [
                list(e) if isinstance(e, (list, tuple)) else e for e in c.get("skeleton") or []
            ],
        }
        if c.get("sigmas") is not None:
            category["sigmas"] = c["sigmas"]
        categories.append(category)
    annotations = []
    crowds: dict[Any, list] = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise DataError(f"{file}: annotation record {ann!r} is not an object")
        missing = [k for k in ANNOTATION_FIELDS if k not in ann]
        if missing:
            raise DataError(f"{file}: annotation id {ann.get('id')!r} lacks {', '.join(missing)}")
        record = {k: ann[k] for k in ANNOTATION_FIELDS + OPTIONAL_FIELDS if k in ann}
        record["iscrowd"] = int(bool(record.get("iscrowd", 0)))
        if record["iscrowd"] and "bbox" in ann:
            crowds.setdefault(ann["image_id"], []).append(list(ann["bbox"]))
        annotations.append(record)
    for img in images:
        if img["id"] in crowds:
            regions = list(img.get("ignore_regions") or [])
            img["ignore_regions"] = regions + [b for b in crowds[img["id"]] if b not in regions]
    info: dict[str, Any] = {"sources": [str(file)]}
    for part, skeleton in (("hand", HAND21), ("face", FACE68)):
        found, unlabelled = wholebody_parts(data["annotations"], part, annotations)
        if found:
            category_id = max(int(c["id"]) for c in categories) + 1
            categories.append(category_for(skeleton, category_id, part))
            annotations += [{**a, "category_id": category_id} for a in found]
            info[f"wholebody_{part}s"] = {"taken": len(found), "not_labelled": unlabelled}
    if any(isinstance(a, dict) and a.get("foot_valid") for a in data["annotations"]):
        info["warnings"] = [  # said, never dropped silently
            "COCO-WholeBody foot keypoints are not imported (no built-in foot keypoint set); "
            "bodies, hands and faces are"
        ]
    part = {"images": images, "annotations": annotations, "categories": categories, "info": info}
    if isinstance(data.get("cameras"), list):  # checked with the rest (poseops.annotations.checks)
        part["cameras"] = [dict(c) if isinstance(c, dict) else c for c in data["cameras"]]
    return part


# COCO-WholeBody's parts beside the body (Jin et al. 2020, "Whole-Body Human Pose Estimation in the Wild"):
# part -> (the keypoint fields of each person and the side they carry, or None).
WHOLEBODY_PARTS = {
    "hand": (("lefthand", "left"), ("righthand", "right")),
    "face": (("face", None),),
}


def wholebody_parts(
    annotations: list[dict], part: str, taken: list[dict]
) -> tuple[list[dict], int]:
    """The hands or faces of COCO-WholeBody annotations (`<field>_kpts` in hand21's / face68's order,
    `<field>_box`, `<field>_valid`) as annotations of their own (category id left to the caller), and
    how many were not labelled (valid false). Ids continue after the largest of `taken` (the body
    annotations, and the parts taken before), so every record keeps a unique id; `person_id` links
    each one to its body annotation."""
    if not any(
        isinstance(a, dict) and f"{field}_kpts" in a
        for a in annotations
        for field, _ in WHOLEBODY_PARTS[part]
    ):
        return [], 0
    next_id = max((int(a["id"]) for a in taken if isinstance(a.get("id"), int)), default=0) + 1
    found, unlabelled = [], 0
    for ann in annotations:
        for field, side in WHOLEBODY_PARTS[part]:
            points = ann.get(f"{field}_kpts")
            if points is None:
                continue
            if not ann.get(f"{field}_valid"):
                unlabelled += 1
                continue
            record = {
                "id": next_id,
                "image_id": ann["image_id"],
                "keypoints": list(points),
                "iscrowd": 0,
                "num_keypoints": sum(
                    1 for v in list(points)[2::3] if isinstance(v, (int, float)) and v > 0
                ),
                "person_id": f"wholebody:{ann['id']}",
            }
            if side is not None:
                record["side"] = side
            box = ann.get(f"{field}_box")
            if box is not None and len(box) == 4 and box[2] > 0 and box[3] > 0:
                record["bbox"] = list(box)
            found.append(record)
            next_id += 1
    return found, unlabelled


def read_coco(
    file: str | Path, images_dir: str | Path | None, out_folder: Path | None
) -> dict[str, Any]:
    """A COCO keypoints JSON; images under `images_dir` (default: the JSON's folder)."""
    file = Path(file)
    folder = Path(images_dir) if images_dir else file.parent
    return coco_to_internal(
        read_coco_json(file), file, folder, out_folder, source=f"coco:{file.name}"
    )
