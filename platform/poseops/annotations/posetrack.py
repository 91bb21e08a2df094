"""PoseTrack18 video labels -> the internal form.

PoseTrack18 ships one COCO-style JSON per video (`annotations/{train,val}/<video>.json`, also found
merged in one file): images carry `vid_id`, `frame_id`, `nframes`, `is_labeled` and ignore regions as
polygons (`ignore_regions_x` / `ignore_regions_y`, one list per polygon); annotations carry
`track_id`, `bbox`, `bbox_head` and 17 keypoints (nose, head_bottom, head_top, ears, limbs) with
visibility 0/1 as the source gives it; there is no `area` (checks.py computes it, flagged).

Only labelled frames become images (an unlabelled frame is not a frame without people). Each image
gets sequence = vid_id, frame_number, split from its path (`images/train/...`, `images/val/...`),
`ignore_regions` (each polygon's box, [x, y, w, h]) and `ignore_polygons` (flat x1, y1, x2, y2, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poseops.annotations.coco import coco_to_internal, read_coco_json
from poseops.errors import DataError
from poseops.skeletons import COCO17

CATEGORY_NAME = "person_posetrack18"


def images_root(file: Path, first_image: str | None) -> Path:
    """The folder a PoseTrack file's image names start from: the nearest ancestor of the file in
    which the first image exists (annotations/val/x.json -> the dataset root), else its folder."""
    if first_image:
        for folder in file.resolve().parents:
            if (folder / first_image).is_file():
                return folder
    return file.parent


def _polygons(img: dict[str, Any], file: Path) -> list[list[float]]:
    xs, ys = img.get("ignore_regions_x") or [], img.get("ignore_regions_y") or []
    if len(xs) != len(ys) or any(len(x) != len(y) for x, y in zip(xs, ys)):
        raise DataError(
            f"{file}: image id {img.get('id')!r}: ignore_regions_x and ignore_regions_y do not pair up"
        )
    return [[float(v) for point in zip(x, y) for v in point] for x, y in zip(xs, ys) if len(x) >= 3]


def _split_of(file_name: str) -> str | None:
    parts = Path(file_name).parts
    return next((p for p in parts if p in ("train", "val")), None)


def read_posetrack(
    file: str | Path, images_dir: str | Path | None, out_folder: Path | None
) -> dict[str, Any]:
    """One PoseTrack18 JSON, or a folder of them (one per video)."""
    file = Path(file)
    files = sorted(file.glob("*.json")) if file.is_dir() else [file]
    if not files:
        raise DataError(f"{file}: no PoseTrack JSON files in this folder")
    merged: dict[str, list] = {"images": [], "annotations": [], "categories": []}
    unlabelled = set()
    for f in files:
        data = read_coco_json(f)
        for img in data["images"]:
            if isinstance(img, dict) and not img.get("is_labeled", True):
                unlabelled.add(img.get("id"))
            else:
                merged["images"].append(img)
        merged["annotations"] += [
            a
            for a in data["annotations"]
            if not (isinstance(a, dict) and a.get("image_id") in unlabelled)
        ]
        merged["categories"] += [c for c in data["categories"] if c not in merged["categories"]]
    first = merged["images"][0].get("file_name") if merged["images"] else None
    root = Path(images_dir) if images_dir else images_root(files[0], first)

    def extra(img: dict[str, Any]) -> dict[str, Any]:
        polygons = _polygons(img, file)
        boxes = []
        for poly in polygons:
            xs, ys = poly[0::2], poly[1::2]
            boxes.append([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
        frame = img.get("frame_id")
        out = {
            "sequence": str(img.get("vid_id")) if img.get("vid_id") is not None else None,
            "frame_number": int(frame) % 10000 if isinstance(frame, int) else None,
            "split": _split_of(str(img["file_name"])),
            "source": "posetrack",
        }
        if polygons:
            out.update(ignore_regions=boxes, ignore_polygons=polygons)
        return out

    part = coco_to_internal(merged, file, root, out_folder, source="posetrack", image_extra=extra)
    part["info"]["unlabelled_frames_skipped"] = len(unlabelled)
    for cat in part["categories"]:
        if cat["name"] == "person" and len(cat["keypoints"]) == 17:
            cat["name"] = CATEGORY_NAME
            # PoseTrack's 17 points are COCO's order with head_bottom / head_top for the eyes; mmpose's
            # PoseTrack18 metadata scores them with COCO-17's OKS sigmas
            cat.setdefault("sigmas", list(COCO17.sigmas))
    return part
