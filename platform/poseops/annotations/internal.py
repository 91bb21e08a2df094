"""The internal annotation form: COCO keypoints JSON plus what video captures need.

    images:      id, file_name (relative to the annotations file, or absolute), frame_index (None for a
                 still image), width, height, sequence, subject, source; optional camera_id, view,
                 group, ignore_regions, task, performer, split, frame_number (the importers fill them:
                 tests/unit/test_importers.py)
    annotations: id, image_id, category_id, keypoints [K*3] (x, y, v), num_keypoints, bbox [x, y, w, h],
                 area, iscrowd; optional keypoints_clean [K*2], bbox_raw, area_flagged, keypoints_3d
                 [K*3] world mm, person_id, track_id
    categories:  id, name, keypoints (names), skeleton (1-based edges, as COCO)
    cameras:     optional; id, name, subject, width, height and the fields of poseops.geometry.Camera

`build_annotations` merges the synthetic captures' labels with every extra source in
`params.yaml: data.annotations`, and writes one file atomically. `import_annotations` publishes one
source's labels as a folder (annotations.json, then manifest.json last). What counts as bad input,
and what is mended, is in `poseops.annotations.checks`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from poseops.annotations.checks import check, raise_problems
from poseops.capture import CAPTURE_PARTS
from poseops.config import AnnotationSource
from poseops.errors import ConfigError, DataError
from poseops.skeletons import Skeleton, get_skeleton
from poseops.storage import (
    exists,
    filesystem,
    join,
    read_json,
    require_published,
    sha256_bytes,
    write_bytes_atomic,
    write_json_atomic,
)

# format -> "module:function"; each is read_<format>(file, images_dir, out_folder) -> the internal form
IMPORTERS = {
    "coco": "poseops.annotations.coco:read_coco",
    "h36m": "poseops.annotations.h36m:read_h36m",
    "freihand": "poseops.annotations.freihand:read_freihand",
    "panoptic": "poseops.annotations.panoptic:read_panoptic",
    "posetrack": "poseops.annotations.posetrack:read_posetrack",
}
SUPPORTED_FORMATS = tuple(IMPORTERS)
ANNOTATIONS_FILE, MANIFEST_FILE = "annotations.json", "manifest.json"


def category_for(skeleton: Skeleton, category_id: int, name: str) -> dict[str, Any]:
    return {
        "id": category_id,
        "name": name,
        "keypoints": list(skeleton.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in skeleton.edges],
    }


def relative_to(path: Path, folder: Path | None) -> str:
    """`path` relative to `folder` (where the annotations file goes); absolute when folder is None
    (a file on an object store cannot point at local images relatively)."""
    if folder is None:
        return str(Path(path).resolve())
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:  # another drive
        return str(Path(path).resolve())


def from_synthetic_captures(raw_dir: str | Path, out_folder: Path) -> dict[str, Any]:
    """The generator's labels of a published synthetic capture folder, in the internal form."""
    from poseops.capture.synthetic_hands import read_hand_sequences

    raw = Path(raw_dir)
    manifest = require_published(raw, "manifest.json")
    skeleton = get_skeleton(manifest.get("skeleton", "hand21"))
    category = category_for(skeleton, 1, "hand")
    entries = {entry["id"]: entry for entry in manifest["sequences"]}
    images, annotations, labelled = [], [], set()
    for sequence in read_hand_sequences(raw):
        entry = entries.get(sequence["id"])
        if entry is None:
            raise DataError(f"{raw / manifest['labels']['file']}: sequence {sequence['id']!r} is not in the manifest")
        labelled.add(entry["id"])
        video = raw / entry["file"]
        if not video.is_file():
            raise DataError(f"{video}: capture listed in {raw / 'manifest.json'} is missing")
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
    unlabelled = sorted(set(entries) - labelled)
    if unlabelled:
        raise DataError(f"{raw / manifest['labels']['file']}: no labels for sequence(s) {', '.join(unlabelled)}")
    return {"images": images, "annotations": annotations, "categories": [category], "info": {"sources": ["synthetic"]}}


def capture_folders(raw_dir: str | Path) -> list[Path]:
    """The published capture folders under `raw_dir`: the folder itself when it holds a manifest,
    else its `hands/` and `bodies/` sub-folders (a capture root; an empty one is a part set to null
    and skipped, one with files but no manifest is a DataError); DataError when there are none."""
    raw = Path(raw_dir)
    if (raw / MANIFEST_FILE).exists():
        return [raw]
    folders = [raw / part for part in CAPTURE_PARTS if (raw / part).is_dir() and any((raw / part).iterdir())]
    if not folders:
        raise DataError(f"{raw}: neither a capture folder (manifest.json) nor a capture root ({', '.join(CAPTURE_PARTS)}/)")
    for folder in folders:
        require_published(folder, MANIFEST_FILE)
    return folders


def from_capture_folder(folder: Path, out_folder: Path | None) -> dict[str, Any]:
    """A synthetic capture folder's labels in the internal form, by the kind its manifest names."""
    from poseops.annotations.bodies import from_synthetic_bodies

    kind = require_published(folder, MANIFEST_FILE).get("kind", "hand")
    readers = {"hand": from_synthetic_captures, "body": from_synthetic_bodies}
    if kind not in readers:
        raise DataError(f"{folder / MANIFEST_FILE}: capture kind {kind!r} is not known ({', '.join(readers)})")
    return readers[kind](folder, out_folder)


def merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate internal-form parts, renumbering image, annotation, category and camera ids.

    Categories with the same name and keypoints become one; every optional field is carried over.
    """
    images, annotations, categories, cameras, sources = [], [], [], [], []
    for part in parts:
        image_ids = {img["id"]: len(images) + i + 1 for i, img in enumerate(part["images"])}
        camera_ids = {cam["id"]: len(cameras) + i + 1 for i, cam in enumerate(part.get("cameras") or [])}
        category_ids = {}
        for cat in part["categories"]:
            same = next((c for c in categories if c["name"] == cat["name"] and c["keypoints"] == cat["keypoints"]), None)
            if same is None:
                same = {**cat, "id": len(categories) + 1}
                categories.append(same)
            category_ids[cat["id"]] = same["id"]
        cameras += [{**cam, "id": camera_ids[cam["id"]]} for cam in part.get("cameras") or []]
        for img in part["images"]:
            record = {**img, "id": image_ids[img["id"]]}
            if img.get("camera_id") is not None:
                record["camera_id"] = camera_ids[img["camera_id"]]
            images.append(record)
        for ann in part["annotations"]:
            annotations.append(
                {**ann, "id": len(annotations) + 1, "image_id": image_ids[ann["image_id"]],
                 "category_id": category_ids[ann["category_id"]]}
            )
        sources += part.get("info", {}).get("sources", [])
    merged = {"images": images, "annotations": annotations, "categories": categories, "info": {"sources": sources}}
    if cameras:
        merged["cameras"] = cameras
    return merged


def importer(fmt: str):
    """The reader of a format, read_<format>(file, images_dir, out_folder) (imported on first use)."""
    if fmt not in IMPORTERS:
        raise ConfigError(f"annotation format {fmt!r} is not supported; supported: {', '.join(SUPPORTED_FORMATS)}")
    module, name = IMPORTERS[fmt].split(":")
    return getattr(import_module(module), name)


def import_source(source: AnnotationSource, out_folder: Path | None) -> dict[str, Any]:
    """One `params.yaml: data.annotations` entry read into the internal form."""
    if source.format not in IMPORTERS:
        raise ConfigError(
            f"params.yaml: data.annotations: format {source.format!r} is not supported; supported: "
            + ", ".join(SUPPORTED_FORMATS)
        )
    if not Path(source.file).exists():
        raise ConfigError(f"params.yaml: data.annotations: {source.format} source {source.file!r} not found")
    options: dict[str, Any] = {}
    if source.views is not None:
        options["views"] = source.views
    if source.cameras is not None:
        options["cameras_file"] = source.cameras
    return importer(source.format)(source.file, source.images, out_folder, **options)


def build_annotations(
    raw_dir: str | Path | None, sources: Sequence[AnnotationSource], out_path: str | Path
) -> dict[str, int]:
    """Merge the synthetic captures' labels (unless raw_dir is None) and every extra source into one
    validated file; nothing is written when anything is wrong. Each part is checked (image files
    included) under its own file name and record ids before merging renumbers them, then the merge
    (e.g. a subject in two fixed splits across sources)."""
    out_path = Path(out_path)
    parts = []
    for folder in capture_folders(raw_dir) if raw_dir is not None else []:
        parts.append(validate(from_capture_folder(folder, out_path.parent), str(folder / "manifest.json"),
                              base=out_path.parent))
    for source in sources:
        parts.append(validate(import_source(source, out_path.parent), source.file, base=out_path.parent))
    merged = validate(merge(parts), str(out_path))
    write_json_atomic(out_path, merged)
    return {"images": len(merged["images"]), "annotations": len(merged["annotations"]), "sources": len(parts)}


def validate(data: Any, source: str, base: str | Path | None = None) -> dict[str, Any]:
    """The mended form of `data` (boxes clipped, missing areas filled: see checks.py), or DataError
    naming the file and every bad record. With `base` (the folder relative file names start from),
    every image file must exist and be non-empty."""
    mended, problems = check(data, source, base)
    raise_problems(problems, source)
    return mended


def annotations_file(url: str | Path) -> str:
    """The annotations JSON of `url`: the file itself, or the one a published import folder names."""
    fs, path = filesystem(url)
    if fs.isdir(path):
        manifest = require_published(url, MANIFEST_FILE)
        return join(url, manifest["annotations"]["file"])
    return str(url)


def load_annotations(path: str | Path) -> dict[str, Any]:
    """A validated internal annotations file (or the one of a published import folder)."""
    path = annotations_file(path)
    return validate(read_json(path), str(path))


def check_annotations_url(url: str | Path) -> dict[str, Any]:
    """`poseops data validate`: the file (or import folder) with its image files checked; returns counts."""
    path = annotations_file(url)
    local = _is_local(path)
    data = validate(read_json(path), str(path), base=Path(filesystem(path)[1]).parent if local else Path("/"))
    return {"images": len(data["images"]), "annotations": len(data["annotations"]),
            "categories": len(data["categories"]), "cameras": len(data.get("cameras") or [])}


def _is_local(url: str | Path) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(filesystem(url)[0], LocalFileSystem)


def import_annotations(
    fmt: str, file: str | Path, images: str | Path | None, out: str | Path, **options: Any
) -> dict[str, Any]:
    """Read `file` in format `fmt`, validate it (image files included) and publish it at folder `out`:
    annotations.json, then manifest.json last. Nothing is written when anything is wrong. `options`
    go to the format's reader (e.g. `views` for panoptic, `cameras_file` for h36m).

    Returns the manifest: format, source, counts (boxes clipped, areas computed here), file + sha256."""
    out_folder = Path(filesystem(out)[1]) if _is_local(out) else None
    part = importer(fmt)(file, images, out_folder, **options)
    mended = validate(part, str(file), base=out_folder if out_folder is not None else Path("/"))
    payload = (json.dumps(mended, indent=1, sort_keys=True) + "\n").encode()
    manifest = {
        "kind": "annotations",
        "format": fmt,
        "source": {"file": str(Path(file).resolve()), "images": str(Path(images).resolve()) if images else None,
                   "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}},
        "annotations": {"file": ANNOTATIONS_FILE, "sha256": sha256_bytes(payload)},
        "counts": {
            "images": len(mended["images"]),
            "annotations": len(mended["annotations"]),
            "categories": len(mended["categories"]),
            "cameras": len(mended.get("cameras") or []),
            "boxes_clipped": sum(1 for a in mended["annotations"] if "bbox_raw" in a),
            "areas_computed": sum(1 for a in mended["annotations"] if a.get("area_flagged")),
        },
    }
    manifest_url = join(out, MANIFEST_FILE)
    if exists(manifest_url):  # unpublish the earlier import before replacing it
        fs, path = filesystem(manifest_url)
        fs.rm(path)
    write_bytes_atomic(join(out, ANNOTATIONS_FILE), payload)
    write_json_atomic(manifest_url, manifest)
    return manifest


def resolve_image_path(annotations_path: str | Path, image: dict[str, Any]) -> Path:
    """Absolute path of an image record's file (relative names are relative to the annotations file)."""
    name = Path(image["file_name"])
    return name if name.is_absolute() else (Path(annotations_path).parent / name).resolve()
