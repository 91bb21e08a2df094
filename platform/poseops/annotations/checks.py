"""Checks of the internal annotation form: every check is an error or a repair.

Errors (refuse: each names the file and the record; nothing is written): duplicate ids; an annotation
whose image or category does not exist; keypoints of the wrong length; NaN, infinite or non-numeric
values; a box with no overlap with its image, or with a zero or negative side; no box and fewer than
two labelled keypoints to take one from; a negative area; an image without a positive width and
height; an unknown camera id; a subject or sequence whose images carry two different fixed splits;
and, when image files are checked, a missing or zero-byte image file.

Repairs (a flaw that cannot make a label wrong; each is counted in a `Repairs` ledger, which the
import's manifest lists and the CLI prints as a summary; `strict=True` turns each into an error):
- skeleton edges whose indices fall outside the category's keypoints are dropped (real releases
  copied COCO's 19 edges into files of fewer keypoints); 0-based edges are renumbered to 1-based;
- a box partly outside its image is clipped to it; the source box is kept as `bbox_raw`;
- a missing box is taken from the labelled keypoints' extent;
- a missing `area` becomes the (clipped) box's w·h, or the keypoints' extent when the box itself
  came from them; the choice is the annotation's `area_source` (and `area_flagged: true`);
- a missing or wrong `num_keypoints` is recounted from the visibilities;
- a visibility outside {0, 1, 2} is clipped into it (rounded up first when fractional, so a
  labelled point, v > 0, stays labelled);
- keypoints outside the frame are kept as they are (a labelled point at y < 0 is a real label).
`iscrowd` becomes 0/1 silently (a JSON boolean and an integer say the same).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from poseops.errors import DataError

MAX_LISTED = 30  # problems shown in one error message
EDGE_TOLERANCE = 1e-6  # px: a box edge this close to the image border is not clipped


def _finite(values: Any) -> bool:
    try:
        return all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    except TypeError:
        return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Repairs:
    """The ledger of repairs one check made: per (scope, repair), the records touched and items mended.

    `scope` is "annotation", "category" or "image"; `items` counts what was mended inside a record
    (e.g. 12 skeleton edges of one category). Warnings (e.g. defaulted OKS sigmas) are kept beside
    them: neither changes a label, and `strict` refuses both.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], list] = defaultdict(list)
        self._items: dict[tuple[str, str], int] = defaultdict(int)
        self.warnings: list[str] = []

    def add(self, scope: str, repair: str, record: Any, items: int = 1) -> None:
        self._records[(scope, repair)].append(record)
        self._items[(scope, repair)] += items

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def __bool__(self) -> bool:
        return bool(self._records) or bool(self.warnings)

    def entries(self) -> list[dict[str, Any]]:
        """[{scope, repair, records, items, ids (the first MAX_LISTED)}], in a stable order."""
        return [
            {
                "scope": scope,
                "repair": repair,
                "records": len(ids),
                "items": self._items[(scope, repair)],
                "ids": ids[:MAX_LISTED],
            }
            for (scope, repair), ids in sorted(self._records.items())
        ]

    def summary(self) -> str:
        """One line, e.g. '12 annotations: area from bbox; 1 category: 12 skeleton edges out of range dropped'."""
        parts = []
        for e in self.entries():
            scope = e["scope"] + ("s" if e["records"] != 1 else "")
            what = (
                f"{e['items']} {e['repair']}"
                if e["items"] != e["records"] or e["scope"] == "category"
                else e["repair"]
            )
            parts.append(f"{e['records']} {scope}: {what}")
        return "; ".join(parts)

    def as_problems(self, source: str) -> list[str]:
        """Each repair and warning worded as an error (for strict checking), naming the records."""
        out = []
        for e in self.entries():
            ids = ", ".join(map(repr, e["ids"]))
            out.append(
                f"{source}: {e['scope']} id(s) {ids}: would need a repair ({e['repair']}); refused under --strict"
            )
        out += [f"{source}: {w}; refused under --strict" for w in self.warnings]
        return out


def clip_box(bbox: list[float], width: float, height: float) -> list[float] | None:
    """[x, y, w, h] clipped to the image [0, width] x [0, height]; None when nothing of it is inside.
    A box inside (to EDGE_TOLERANCE px) comes back unchanged."""
    x, y, w, h = bbox
    t = EDGE_TOLERANCE
    if x >= -t and y >= -t and x + w <= width + t and y + h <= height + t and w > 0 and h > 0:
        return list(bbox)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def image_file(image: dict[str, Any], base: Path) -> Path:
    name = Path(str(image["file_name"]))
    return name if name.is_absolute() else Path(os.path.normpath(base / name))


def check(
    data: Any, source: str, base: str | Path | None = None, repairs: Repairs | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(a repaired copy of `data`, problems). `base`: the folder relative file names start from;
    when given, every image file must exist and be non-empty (each distinct file is checked once).
    The repairs made are counted in `repairs` (a fresh ledger when None)."""
    repairs = Repairs() if repairs is None else repairs
    if not isinstance(data, dict):
        return {}, [f"{source}: expected a JSON object with images, annotations and categories"]
    problems: list[str] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(f"{source}: missing or malformed {key!r} list")
    if problems:
        return {}, problems
    # records are copied one level deep: mending replaces fields, it never edits a list in place
    data = {
        **data,
        "images": [dict(i) if isinstance(i, dict) else i for i in data["images"]],
        "annotations": [dict(a) if isinstance(a, dict) else a for a in data["annotations"]],
        "categories": [dict(c) if isinstance(c, dict) else c for c in data["categories"]],
    }
    camera_ids = _check_cameras(data.get("cameras") or [], source, problems)
    keypoint_counts = _check_categories(data["categories"], source, problems, repairs)
    images = _check_images(data["images"], source, camera_ids, base, problems)
    _check_annotations(data["annotations"], source, images, keypoint_counts, problems, repairs)
    _check_splits(data["images"], source, problems)
    return data, problems


def _check_cameras(cameras: list, source: str, problems: list[str]) -> set:
    from poseops.geometry import Camera

    ids: set = set()
    fields = set(Camera.model_fields)
    for n, cam in enumerate(cameras):
        if not isinstance(cam, dict):
            problems.append(f"{source}: cameras[{n}] is not an object")
            continue
        where = f"{source}: camera id {cam.get('id')!r} ({cam.get('name', '')})"
        if cam.get("id") in ids:
            problems.append(f"{where}: duplicate camera id")
        ids.add(cam.get("id"))
        try:
            Camera(**{k: v for k, v in cam.items() if k in fields})
        except Exception as e:  # pydantic's ValidationError: name the field
            problems.append(f"{where}: malformed camera ({str(e).splitlines()[0]}...)")
    return ids


def _check_categories(categories: list, source: str, problems: list[str], repairs: Repairs) -> dict:
    counts: dict = {}
    for n, cat in enumerate(categories):
        if not isinstance(cat, dict):
            problems.append(f"{source}: categories[{n}] is not an object")
            continue
        where = f"{source}: category id {cat.get('id')!r} ({cat.get('name')})"
        if cat.get("id") in counts:
            problems.append(f"{where}: duplicate category id")
        names = cat.get("keypoints")
        if not isinstance(names, list):
            problems.append(f"{where}: 'keypoints' must be a list of names")
            names = []
        counts[cat.get("id")] = len(names)
        sigmas = cat.get("sigmas")
        if sigmas is not None and not (
            isinstance(sigmas, list)
            and len(sigmas) == len(names)
            and _finite(sigmas)
            and all(v > 0 for v in sigmas)
        ):
            problems.append(
                f"{where}: 'sigmas' must hold {len(names)} positive numbers, one per keypoint"
            )
        _repair_skeleton(cat, len(names), where, problems, repairs)
    return counts


def _repair_skeleton(cat: dict, k: int, where: str, problems: list[str], repairs: Repairs) -> None:
    """Edges must be pairs of integers; 0-based ones are renumbered, out-of-range ones dropped (repairs)."""
    edges = cat.get("skeleton") or []
    if not isinstance(edges, list) or not all(
        isinstance(e, (list, tuple))
        and len(e) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in e)
        for e in edges
    ):
        problems.append(f"{where}: 'skeleton' must be a list of [a, b] integer index pairs")
        return
    edges = [list(e) for e in edges]
    if edges and any(0 in e for e in edges) and all(0 <= i < k for e in edges for i in e):
        edges = [[a + 1, b + 1] for a, b in edges]
        repairs.add(
            "category", "skeleton edges 0-based, renumbered from 1", cat.get("id"), len(edges)
        )
    kept = [e for e in edges if all(1 <= i <= k for i in e)]
    if len(kept) != len(edges):
        repairs.add(
            "category", "skeleton edges out of range dropped", cat.get("id"), len(edges) - len(kept)
        )
    cat["skeleton"] = kept


def _check_images(images: list, source: str, camera_ids: set, base, problems: list[str]) -> dict:
    by_id: dict = {}
    checked_files: dict[Path, str | None] = {}
    for n, img in enumerate(images):
        if not isinstance(img, dict):
            problems.append(f"{source}: images[{n}] is not an object")
            continue
        where = f"{source}: image id {img.get('id')!r}"
        if img.get("id") in by_id:
            problems.append(f"{where}: duplicate image id")
            continue
        by_id[img.get("id")] = img
        if not img.get("file_name"):
            problems.append(f"{where}: no file_name")
            continue
        w, h = img.get("width"), img.get("height")
        if not (_number(w) and _number(h) and w > 0 and h > 0):
            problems.append(
                f"{where}: width and height must be positive numbers (got {w!r}, {h!r})"
            )
        if img.get("split") not in (None, "train", "val"):
            problems.append(f"{where}: split {img['split']!r} is neither 'train' nor 'val'")
        if img.get("camera_id") is not None and img["camera_id"] not in camera_ids:
            problems.append(f"{where}: camera_id {img['camera_id']!r} is not in cameras")
        if base is not None:
            path = image_file(img, Path(base))
            if path not in checked_files:
                checked_files[path] = _file_problem(path)
            if checked_files[path]:
                problems.append(f"{where}: {checked_files[path]}")
    return by_id


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"image file {path} not found"
    if path.stat().st_size == 0:
        return f"image file {path} is empty (zero bytes)"
    return None


def _check_annotations(
    annotations: list,
    source: str,
    images: dict,
    keypoint_counts: dict,
    problems: list[str],
    repairs: Repairs,
) -> None:
    seen: set = set()
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            problems.append(f"{source}: annotations[{n}] is not an object")
            continue
        where = f"{source}: annotation id {ann.get('id')!r} (image {ann.get('image_id')!r})"
        if ann.get("id") in seen:
            problems.append(f"{where}: duplicate annotation id")
            continue
        seen.add(ann.get("id"))
        image = images.get(ann.get("image_id"))
        if image is None:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in images")
            continue
        if ann.get("category_id") not in keypoint_counts:
            problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}")
            continue
        k = keypoint_counts[ann["category_id"]]
        before = len(problems)
        _check_keypoints(ann, k, where, problems, repairs)
        if len(problems) == before:
            _mend_box_and_area(ann, image, where, problems, repairs)
        if len(problems) == before:
            ann["iscrowd"] = int(bool(ann.get("iscrowd", 0)))
            labelled = sum(1 for v in ann["keypoints"][2::3] if v > 0)
            if ann.get("num_keypoints") != labelled:
                ann["num_keypoints"] = labelled
                repairs.add("annotation", "num_keypoints recounted", ann.get("id"))


def _check_keypoints(ann: dict, k: int, where: str, problems: list[str], repairs: Repairs) -> None:
    keypoints = ann.get("keypoints")
    if not isinstance(keypoints, list) or len(keypoints) != 3 * k:
        n = len(keypoints) if isinstance(keypoints, list) else keypoints
        problems.append(
            f"{where}: keypoints has {n} values, category {ann['category_id']} needs {3 * k}"
        )
        return
    if not _finite(keypoints):
        problems.append(f"{where}: keypoints contain NaN, infinite or non-numeric values")
        return
    visibility = keypoints[2::3]
    # labelled iff v > 0, as COCO's evaluation reads it: a fractional v (COCO-WholeBody's machine-labelled
    # hands carry a confidence there) is rounded up, so no label is lost (test_import_layouts.py)
    clipped = [min(2, max(0, math.ceil(v))) for v in visibility]
    changed = sum(1 for v, c in zip(visibility, clipped) if v != c)
    if changed:
        repaired = list(keypoints)
        repaired[2::3] = clipped
        ann["keypoints"] = repaired
        repairs.add("annotation", "visibilities outside {0, 1, 2} clipped", ann.get("id"), changed)
    for name, width in (("keypoints_clean", 2), ("keypoints_3d", 3)):
        extra = ann.get(name)
        if extra is None:
            continue
        values = [v for v in extra if v is not None] if isinstance(extra, list) else None
        if values is None or len(extra) != width * k or not _finite(values):
            problems.append(f"{where}: {name} must hold {width * k} finite numbers")


def keypoint_extent(keypoints: list) -> list[float] | None:
    """[x, y, w, h] spanned by the labelled keypoints (v > 0), or None when it has no area."""
    points = [(x, y) for x, y, v in zip(keypoints[0::3], keypoints[1::3], keypoints[2::3]) if v > 0]
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)), float(max(ys) - min(ys))]
    return box if box[2] > 0 and box[3] > 0 else None


def _mend_box_and_area(
    ann: dict, image: dict, where: str, problems: list[str], repairs: Repairs
) -> None:
    bbox = ann.get("bbox")
    from_keypoints = False
    if bbox is None:
        bbox = keypoint_extent(ann["keypoints"])
        if bbox is None:
            problems.append(f"{where}: no bbox, and fewer than two labelled keypoints spanning one")
            return
        ann["bbox"], from_keypoints = bbox, True
        repairs.add("annotation", "bbox from keypoint extent", ann.get("id"))
    if not (isinstance(bbox, list) and len(bbox) == 4 and _finite(bbox)):
        problems.append(f"{where}: bbox must be 4 finite numbers [x, y, w, h] (got {bbox!r})")
        return
    if bbox[2] <= 0 or bbox[3] <= 0:
        problems.append(f"{where}: bbox {bbox} has a zero or negative width or height")
        return
    width, height = image.get("width"), image.get("height")
    if not (_number(width) and _number(height)):
        return  # reported with the image
    clipped = clip_box([float(v) for v in bbox], width, height)
    if clipped is None:
        problems.append(f"{where}: bbox {bbox} has no overlap with the {width}x{height} image")
        return
    if clipped != [float(v) for v in bbox]:
        ann.setdefault("bbox_raw", list(bbox))
        ann["bbox"] = clipped
        repairs.add("annotation", "bbox clipped to the image", ann.get("id"))
    area = ann.get("area")
    if area is None:
        ann["area"] = clipped[2] * clipped[3]
        ann["area_flagged"] = True
        ann["area_source"] = "keypoints" if from_keypoints else "bbox"
        repairs.add(
            "annotation",
            "area from keypoint extent" if from_keypoints else "area from bbox",
            ann.get("id"),
        )
    elif not _number(area):
        problems.append(f"{where}: area {area!r} is not a finite number")
    elif area < 0:
        problems.append(f"{where}: negative area {area}")


def _check_splits(images: list, source: str, problems: list[str]) -> None:
    """A subject or a sequence whose images carry two different fixed splits is an error naming it."""
    for key in ("subject", "sequence"):
        splits: dict = defaultdict(lambda: defaultdict(int))
        for img in images:
            if (
                isinstance(img, dict)
                and img.get("split") in ("train", "val")
                and img.get(key) not in (None, "")
            ):
                splits[(img.get("source"), img[key])][img["split"]] += 1
        for (origin, name), counts in sorted(splits.items(), key=lambda kv: str(kv[0])):
            if len(counts) > 1:
                shares = ", ".join(f"{n} images in {s}" for s, n in sorted(counts.items()))
                problems.append(
                    f"{source}: {key} {name!r} (source {origin}) is in two splits ({shares})"
                )


def raise_problems(problems: list[str], source: str) -> None:
    """DataError listing every problem (the first MAX_LISTED), or nothing when there is none."""
    if not problems:
        return
    if len(problems) == 1:
        raise DataError(problems[0])
    shown = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(f"{source}: {len(problems)} problems:\n  {shown}{more}")
