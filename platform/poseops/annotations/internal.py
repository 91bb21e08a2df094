"""The internal annotation form: COCO keypoints JSON plus what video captures need.

    images:      id, file_name (relative to the annotations file, or absolute), frame_index (None for a
                 still image), width, height, sequence, subject, source
    annotations: id, image_id, category_id, keypoints [K*3] (x, y, v), num_keypoints, bbox [x, y, w, h],
                 area, iscrowd, and keypoints_clean [K*2] where a generator knows the truth
    categories:  id, name, keypoints (names), skeleton (1-based edges, as COCO)

`build_annotations` merges the synthetic captures' labels with every extra source in
`params.yaml: data.annotations`, and writes one file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poseops.config import AnnotationSource
from poseops.errors import ConfigError, DataError
from poseops.skeletons import Skeleton, get_skeleton
from poseops.storage import read_json, require_published, write_json_atomic

SUPPORTED_FORMATS = ("coco",)


def category_for(skeleton: Skeleton, category_id: int, name: str) -> dict[str, Any]:
    return {
        "id": category_id,
        "name": name,
        "keypoints": list(skeleton.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in skeleton.edges],
    }


def relative_to(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive
        return str(path.resolve())


def from_synthetic_captures(raw_dir: str | Path, out_folder: Path) -> dict[str, Any]:
    """The generator's labels of a published synthetic capture folder, in the internal form."""
    raw = Path(raw_dir)
    manifest = require_published(raw, "manifest.json")
    labels = read_json(raw / manifest["labels"]["file"])
    skeleton = get_skeleton(manifest.get("skeleton", "hand21"))
    category = category_for(skeleton, 1, "hand")
    images, annotations = [], []
    for entry in manifest["sequences"]:
        video = raw / entry["file"]
        if not video.is_file():
            raise DataError(f"{video}: capture listed in {raw / 'manifest.json'} is missing")
        sequence = labels["sequences"].get(entry["id"])
        if sequence is None:
            raise DataError(f"{raw / manifest['labels']['file']}: no labels for sequence {entry['id']!r}")
        for frame in sequence["frames"]:
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": relative_to(video, out_folder),
                    "frame_index": frame["frame_index"],
                    "width": entry["width"],
                    "height": entry["height"],
                    "sequence": entry["id"],
                    "subject": entry["subject"],
                    "source": "synthetic",
                }
            )
            keypoints = [float(v) for point in frame["keypoints"] for v in point]
            x, y, w, h = frame["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category["id"],
                    "keypoints": keypoints,
                    "keypoints_clean": [float(v) for point in frame["keypoints_clean"] for v in point],
                    "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "side": frame.get("side"),
                }
            )
    return {"images": images, "annotations": annotations, "categories": [category], "info": {"sources": ["synthetic"]}}


def merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate internal-form parts, renumbering image, annotation and category ids."""
    images, annotations, categories, sources = [], [], [], []
    for part in parts:
        image_ids = {img["id"]: len(images) + i + 1 for i, img in enumerate(part["images"])}
        category_ids = {}
        for cat in part["categories"]:
            same = next((c for c in categories if c["name"] == cat["name"] and c["keypoints"] == cat["keypoints"]), None)
            if same is None:
                same = {**cat, "id": len(categories) + 1}
                categories.append(same)
            category_ids[cat["id"]] = same["id"]
        images += [{**img, "id": image_ids[img["id"]]} for img in part["images"]]
        for ann in part["annotations"]:
            annotations.append(
                {**ann, "id": len(annotations) + 1, "image_id": image_ids[ann["image_id"]],
                 "category_id": category_ids[ann["category_id"]]}
            )
        sources += part.get("info", {}).get("sources", [])
    return {"images": images, "annotations": annotations, "categories": categories, "info": {"sources": sources}}


def import_source(source: AnnotationSource, out_folder: Path) -> dict[str, Any]:
    if source.format == "coco":
        from poseops.annotations.coco import read_coco

        return read_coco(source.file, source.images, out_folder)
    raise ConfigError(
        f"params.yaml: data.annotations: format {source.format!r} is not supported yet; supported: "
        + ", ".join(SUPPORTED_FORMATS)
    )


def build_annotations(
    raw_dir: str | Path | None, sources: Sequence[AnnotationSource], out_path: str | Path
) -> dict[str, int]:
    """Merge the synthetic captures' labels (unless raw_dir is None) and every extra source into one file."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    parts = [from_synthetic_captures(raw_dir, out_path.parent)] if raw_dir is not None else []
    parts += [import_source(source, out_path.parent) for source in sources]
    merged = merge(parts)
    validate(merged, str(out_path))
    write_json_atomic(out_path, merged)
    return {"images": len(merged["images"]), "annotations": len(merged["annotations"]), "sources": len(parts)}


def validate(data: dict[str, Any], source: str) -> None:
    """Structural checks; DataError naming the file and the record."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{source}: missing or malformed {key!r} list")
    images = {img["id"] for img in data["images"]}
    sizes = {c["id"]: len(c.get("keypoints", [])) for c in data["categories"]}
    seen = set()
    for ann in data["annotations"]:
        where = f"{source}: annotation id {ann.get('id')}"
        if ann.get("id") in seen:
            raise DataError(f"{where}: duplicate annotation id")
        seen.add(ann.get("id"))
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: image_id {ann.get('image_id')} is not in images")
        if ann.get("category_id") not in sizes:
            raise DataError(f"{where}: unknown category_id {ann.get('category_id')}")
        keypoints = ann.get("keypoints", [])
        if len(keypoints) != 3 * sizes[ann["category_id"]]:
            raise DataError(
                f"{where}: keypoints has {len(keypoints)} values, category {ann['category_id']} needs "
                f"{3 * sizes[ann['category_id']]}"
            )
        if any(v != v for v in keypoints):
            raise DataError(f"{where}: keypoints contain NaN")


def load_annotations(path: str | Path) -> dict[str, Any]:
    data = read_json(path)
    validate(data, str(path))
    return data


def resolve_image_path(annotations_path: str | Path, image: dict[str, Any]) -> Path:
    """Absolute path of an image record's file (relative names are relative to the annotations file)."""
    name = Path(image["file_name"])
    return name if name.is_absolute() else (Path(annotations_path).parent / name).resolve()
