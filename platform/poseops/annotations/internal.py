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

from poseops.annotations.checks import Repairs, check, raise_problems
from poseops.annotations.keypoint_sets import coverage_lines, family_coverage, map_categories
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

# format -> "module:function"; each is read_<format>(file, images_dir, out_folder, **options) -> the internal form
IMPORTERS = {
    "coco": "poseops.annotations.coco:read_coco",
    "mpii": "poseops.annotations.mpii:read_mpii",
    "posetrack": "poseops.annotations.posetrack:read_posetrack",
    "interhand": "poseops.annotations.interhand:read_interhand",
    "h36m": "poseops.annotations.h36m:read_h36m",
    "freihand": "poseops.annotations.freihand:read_freihand",
    "panoptic": "poseops.annotations.panoptic:read_panoptic",
}
SUPPORTED_FORMATS = tuple(IMPORTERS)
# A user's importer: an entry point `<format> = "package.module:read"` in this group, with the same
# signature as the built-in readers (see README.md, "Importer plug-ins").
PLUGIN_GROUP = "poseops.importers"
ANNOTATIONS_FILE, MANIFEST_FILE = "annotations.json", "manifest.json"


def plugin_importers() -> dict[str, Any]:
    """Format name -> entry point of every installed importer plug-in (built-in names win)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in IMPORTERS}


def import_formats() -> dict[str, str]:
    """Every format `poseops data import` reads: name -> where its reader lives."""
    return {**IMPORTERS, **{name: ep.value for name, ep in plugin_importers().items()}}


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
            raise DataError(
                f"{raw / manifest['labels']['file']}: sequence {sequence['id']!r} is not in the manifest"
            )
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
                    "keypoints_clean": [
                        float(v) for point in frame["keypoints_clean"] for v in point
                    ],
                    "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "side": frame.get("side"),
                }
            )
    unlabelled = sorted(set(entries) - labelled)
    if unlabelled:
        raise DataError(
            f"{raw / manifest['labels']['file']}: no labels for sequence(s) {', '.join(unlabelled)}"
        )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [category],
        "info": {"sources": ["synthetic"]},
    }


def capture_folders(raw_dir: str | Path) -> list[Path]:
    """The published capture folders under `raw_dir`: the folder itself when it holds a manifest,
    else its `hands/` and `bodies/` sub-folders (a capture root; an empty one is a part set to null
    and skipped, one with files but no manifest is a DataError); DataError when there are none."""
    raw = Path(raw_dir)
    if (raw / MANIFEST_FILE).exists():
        return [raw]
    folders = [
        raw / part
        for part in CAPTURE_PARTS
        if (raw / part).is_dir() and any((raw / part).iterdir())
    ]
    if not folders:
        raise DataError(
            f"{raw}: neither a capture folder (manifest.json) nor a capture root ({', '.join(CAPTURE_PARTS)}/)"
        )
    for folder in folders:
        require_published(folder, MANIFEST_FILE)
    return folders


def from_capture_folder(folder: Path, out_folder: Path | None) -> dict[str, Any]:
    """A synthetic capture folder's labels in the internal form, by the kind its manifest names."""
    from poseops.annotations.bodies import from_synthetic_bodies

    kind = require_published(folder, MANIFEST_FILE).get("kind", "hand")
    readers = {"hand": from_synthetic_captures, "body": from_synthetic_bodies}
    if kind not in readers:
        raise DataError(
            f"{folder / MANIFEST_FILE}: capture kind {kind!r} is not known ({', '.join(readers)})"
        )
    return readers[kind](folder, out_folder)


def merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate internal-form parts, renumbering image, annotation, category and camera ids.

    Categories with the same name and keypoints become one; every optional field is carried over.
    """
    images, annotations, categories, cameras, sources = [], [], [], [], []
    for part in parts:
        image_ids = {img["id"]: len(images) + i + 1 for i, img in enumerate(part["images"])}
        camera_ids = {
            cam["id"]: len(cameras) + i + 1 for i, cam in enumerate(part.get("cameras") or [])
        }
        category_ids = {}
        for cat in part["categories"]:
            same = next(
                (
                    c
                    for c in categories
                    if c["name"] == cat["name"] and c["keypoints"] == cat["keypoints"]
                ),
                None,
            )
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
                {
                    **ann,
                    "id": len(annotations) + 1,
                    "image_id": image_ids[ann["image_id"]],
                    "category_id": category_ids[ann["category_id"]],
                }
            )
        sources += part.get("info", {}).get("sources", [])
    merged = {
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "info": {"sources": sources},
    }
    if cameras:
        merged["cameras"] = cameras
    return merged


def importer(fmt: str):
    """The reader of a format, read_<format>(file, images_dir, out_folder, **options) (imported on first
    use): a built-in one, else an installed plug-in's."""
    if fmt in IMPORTERS:
        module, name = IMPORTERS[fmt].split(":")
        return getattr(import_module(module), name)
    plugins = plugin_importers()
    if fmt in plugins:
        try:
            return plugins[fmt].load()
        except Exception as e:  # a broken plug-in: name it, keep its reason
            raise ConfigError(
                f"importer plug-in {fmt!r} ({plugins[fmt].value}) cannot be loaded: {e}"
            ) from e
    raise ConfigError(
        f"annotation format {fmt!r} is not supported; supported: {', '.join(import_formats())}"
    )


def read_part(
    fmt: str,
    file: str | Path,
    images: str | Path | None,
    out_folder: Path | None,
    repairs: Repairs,
    keypoint_map: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One source read by its format's reader, its categories mapped onto known keypoint sets
    (`poseops.annotations.keypoint_sets`); not yet checked."""
    part = importer(fmt)(file, images, out_folder, **options)
    if not isinstance(part, dict) or not all(
        isinstance(part.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(
            f"{file}: the {fmt} importer returned no images/annotations/categories lists"
        )
    for warning in (part.get("info") or {}).get(
        "warnings", []
    ):  # what a reader could not take, said
        repairs.warn(f"{file}: {warning}")
    return map_categories(part, repairs, keypoint_map)


def import_source(
    source: AnnotationSource, out_folder: Path | None, repairs: Repairs | None = None
) -> dict[str, Any]:
    """One `params.yaml: data.annotations` entry read into the internal form."""
    if source.format not in import_formats():
        raise ConfigError(
            f"params.yaml: data.annotations: format {source.format!r} is not supported; supported: "
            + ", ".join(import_formats())
        )
    if not Path(source.file).exists():
        raise ConfigError(
            f"params.yaml: data.annotations: {source.format} source {source.file!r} not found"
        )
    options: dict[str, Any] = {}
    if source.views is not None:
        options["views"] = source.views
    if source.cameras is not None:
        options["cameras_file"] = source.cameras
    part = read_part(
        source.format,
        source.file,
        source.images,
        out_folder,
        Repairs() if repairs is None else repairs,
        keypoint_map=source.keypoint_map,
        **options,
    )
    if source.name:  # the name datasets, weights (data.weights) and metrics know the source by
        part = {
            **part,
            "images": [
                {**img, "source": source.name} if isinstance(img, dict) else img
                for img in part["images"]
            ],
        }
    return part


def build_annotations(
    raw_dir: str | Path | None,
    sources: Sequence[AnnotationSource],
    out_path: str | Path,
    families: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the synthetic captures' labels (unless raw_dir is None) and every extra source into one
    validated file; nothing is written when anything is wrong. Each part is checked (image files
    included) under its own file name and record ids before merging renumbers them, then the merge
    (e.g. a subject in two fixed splits across sources). A source with `strict` refuses repairs.

    With `families` (name -> keypoint set), the summary has `coverage` lines (per source and category,
    what each family takes and why it skips the rest) and `warnings` (a category no family takes, with
    the closest set); a strict source's untaken category is an error."""
    out_path = Path(out_path)
    parts, repair_summaries, warnings = [], {}, []
    for folder in capture_folders(raw_dir) if raw_dir is not None else []:
        parts.append(
            validate(
                from_capture_folder(folder, out_path.parent),
                str(folder / "manifest.json"),
                base=out_path.parent,
            )
        )
    strict_sources = set()
    for source in sources:
        repairs = Repairs()
        part = import_source(source, out_path.parent, repairs)
        parts.append(
            validate(part, source.file, base=out_path.parent, strict=source.strict, repairs=repairs)
        )
        if repairs:
            repair_summaries[source.file] = repairs.summary()
            warnings += repairs.warnings
        if source.strict:
            strict_sources |= {img.get("source") for img in parts[-1]["images"]}
    merged = validate(merge(parts), str(out_path))
    summary: dict[str, Any] = {
        "images": len(merged["images"]),
        "annotations": len(merged["annotations"]),
        "sources": len(parts),
        "repairs": repair_summaries,
    }
    if families:
        rows = family_coverage(merged, families)
        summary["coverage"], untaken = coverage_lines(rows)
        refused = [
            w
            for row, w in zip([r for r in rows if r["closest"] is not None], untaken)
            if row["source"] in strict_sources
        ]
        if refused:
            raise DataError(
                f"{out_path}: " + "; ".join(refused) + " (refused: the source is strict)"
            )
        warnings += untaken
    summary["warnings"] = warnings
    write_json_atomic(out_path, merged)
    return summary


def validate(
    data: Any,
    source: str,
    base: str | Path | None = None,
    strict: bool = False,
    repairs: Repairs | None = None,
) -> dict[str, Any]:
    """The repaired form of `data` (see checks.py: which flaws are errors, which are repaired), or
    DataError naming the file and every bad record. With `base` (the folder relative file names start
    from), every image file must exist and be non-empty. The repairs are counted in `repairs`;
    `strict` refuses every repair and warning (those already in `repairs` included)."""
    repairs = Repairs() if repairs is None else repairs
    mended, problems = check(data, source, base, repairs)
    if strict and not problems:
        problems = repairs.as_problems(source)
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


def check_annotations_url(url: str | Path, strict: bool = False) -> tuple[dict[str, Any], Repairs]:
    """`poseops data validate`: the file (or import folder) with its image files checked; returns
    (counts, the repairs loading it would make)."""
    path = annotations_file(url)
    local = _is_local(path)
    repairs = Repairs()
    data = validate(
        read_json(path),
        str(path),
        base=Path(filesystem(path)[1]).parent if local else Path("/"),
        strict=strict,
        repairs=repairs,
    )
    counts = {
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "categories": len(data["categories"]),
        "cameras": len(data.get("cameras") or []),
    }
    return counts, repairs


def _is_local(url: str | Path) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(filesystem(url)[0], LocalFileSystem)


def preview_import(
    fmt: str,
    file: str | Path,
    images: str | Path | None,
    strict: bool = False,
    keypoint_map: dict[str, str] | None = None,
    **options: Any,
) -> tuple[dict[str, Any], Repairs]:
    """(the checked internal form, its repairs) of `file` in format `fmt`, image files included, as
    `import_annotations` would publish it; writes nothing (`poseops data validate --format`)."""
    repairs = Repairs()
    part = read_part(fmt, file, images, None, repairs, keypoint_map=keypoint_map, **options)
    return validate(part, str(file), base=Path("/"), strict=strict, repairs=repairs), repairs


def import_annotations(
    fmt: str,
    file: str | Path,
    images: str | Path | None,
    out: str | Path,
    strict: bool = False,
    keypoint_map: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Read `file` in format `fmt`, validate it (image files included) and publish it at folder `out`:
    annotations.json, then manifest.json last. Nothing is written when anything is wrong; `strict`
    refuses every repair and warning. `options` go to the format's reader (e.g. `views` for panoptic,
    `cameras_file` for h36m); `keypoint_map` maps the file's keypoint names to a known set's.

    Returns the manifest: format, source, counts, the repairs made (with a one-line summary), warnings,
    keypoint-set mappings, file + sha256."""
    out_folder = Path(filesystem(out)[1]) if _is_local(out) else None
    repairs = Repairs()
    part = read_part(fmt, file, images, out_folder, repairs, keypoint_map=keypoint_map, **options)
    mended = validate(
        part,
        str(file),
        base=out_folder if out_folder is not None else Path("/"),
        strict=strict,
        repairs=repairs,
    )
    payload = (json.dumps(mended, indent=1, sort_keys=True) + "\n").encode()
    manifest = {
        "kind": "annotations",
        "format": fmt,
        "source": {
            "file": str(Path(file).resolve()),
            "images": str(Path(images).resolve()) if images else None,
            "options": {
                k: list(v) if isinstance(v, tuple) else (str(v) if isinstance(v, Path) else v)
                for k, v in options.items()
            },
            "keypoint_map": keypoint_map,
        },
        "annotations": {"file": ANNOTATIONS_FILE, "sha256": sha256_bytes(payload)},
        "counts": {
            "images": len(mended["images"]),
            "annotations": len(mended["annotations"]),
            "categories": len(mended["categories"]),
            "cameras": len(mended.get("cameras") or []),
            "boxes_clipped": sum(1 for a in mended["annotations"] if "bbox_raw" in a),
            "areas_computed": sum(1 for a in mended["annotations"] if a.get("area_flagged")),
        },
        "area_sources": {
            src: sum(1 for a in mended["annotations"] if a.get("area_source") == src)
            for src in ("bbox", "keypoints")
        },
        "repairs": repairs.entries(),
        "repair_summary": repairs.summary(),
        "warnings": list(repairs.warnings),
        "keypoint_mappings": mended.get("info", {}).get("keypoint_mappings", []),
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
