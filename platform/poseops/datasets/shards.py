"""Derive a family's dataset: crops with a margin, keypoints, visibility and the crop->source affine,
as Parquet shards of bounded size on any fsspec store, with `card.json` written last.

A crop is cut at the source's resolution (an integer-aligned window, zero-padded outside the image), so
evaluation on shards and the endpoint on the original image see the very same pixels. Only a window
longer than `MAX_CROP_SIDE` is resized down, and its affine records that.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poseops.annotations.internal import load_annotations, resolve_image_path
from poseops.config import FamilyData, SplitParams
from poseops.datasets.transforms import cut_window, integer_window
from poseops.errors import DataError
from poseops.skeletons import SKELETONS, Skeleton, get_skeleton, skeleton_from_coco_category
from poseops.storage import clear, exists, filesystem, join, sha256_file, write_json_atomic

CARD = "card.json"
MAX_CROP_SIDE = 512
ROWS_PER_GROUP = 64
CROP_KINDS = ("hand_crop", "topdown_crop")

SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("image_id", pa.int64()),
        ("annotation_id", pa.int64()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("frame_index", pa.int64()),
        ("image", pa.binary()),  # PNG bytes of the crop
        ("crop_h", pa.int32()),
        ("crop_w", pa.int32()),
        ("keypoints", pa.list_(pa.float32())),  # K*2, crop pixels
        ("keypoints_clean", pa.list_(pa.float32())),  # K*2, crop pixels (= keypoints where no truth is known)
        ("visibility", pa.list_(pa.int8())),  # K, COCO 0/1/2
        ("box_in_crop", pa.list_(pa.float32())),  # x, y, w, h
        ("affine", pa.list_(pa.float64())),  # crop -> source, 2x3 row-major
    ]
)


# ---------------------------------------------------------------- splits
def split_units(images: list[dict], split: SplitParams) -> dict[Any, str]:
    """Unit (subject, else sequence, else image id) -> 'train' | 'val'; a unit never spans splits.

    Subjects come first: a synthetic hand identity (or a person) appears in several sequences, and
    grouping by subject keeps all of them, hence every one of its sequences, in one split.
    """
    units = sorted({unit_of(img) for img in images}, key=str)
    rng = np.random.default_rng(split.seed)
    order = [units[i] for i in rng.permutation(len(units))]
    n_val = max(1, round(len(units) * split.val_fraction)) if len(units) > 1 else 0
    return {unit: ("val" if i < n_val else "train") for i, unit in enumerate(order)}


def unit_of(image: dict) -> str:
    source = image.get("source") or ""
    if image.get("subject"):
        return f"subject:{source}:{image['subject']}"
    if image.get("sequence") not in (None, ""):
        return f"sequence:{source}:{image['sequence']}"
    return f"image:{image['id']}"


# ---------------------------------------------------------------- reading sources
class FrameSource:
    """Decodes each video once, in order; still images by path. Errors name the file."""

    def __init__(self, annotations_path: Path):
        self.annotations_path = annotations_path
        self._video: Path | None = None
        self._frames: list[np.ndarray] = []

    def frame(self, image: dict) -> np.ndarray:
        path = resolve_image_path(self.annotations_path, image)
        if image.get("frame_index") is None:
            if not path.is_file():
                raise DataError(f"{path}: image of record {image['id']} not found")
            pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if pixels is None:
                raise DataError(f"{path}: image of record {image['id']} cannot be decoded (corrupt or empty)")
            return pixels
        if self._video != path:
            from poseops.capture.synthetic_hands import read_video

            self._frames, self._video = read_video(path), path
        index = int(image["frame_index"])
        if index >= len(self._frames):
            raise DataError(f"{path}: record {image['id']} asks for frame {index}, the video has {len(self._frames)}")
        return self._frames[index]


# ---------------------------------------------------------------- one sample
def crop_sample(pixels: np.ndarray, ann: dict, num_keypoints: int, margin: float) -> dict[str, Any]:
    """Cut one instance's crop (see module doc) and express its labels in crop pixels."""
    x0, y0, side = integer_window(ann["bbox"], margin)
    crop = cut_window(pixels, x0, y0, side)
    factor = 1.0
    if side > MAX_CROP_SIDE:
        factor = MAX_CROP_SIDE / side
        crop = cv2.resize(crop, (MAX_CROP_SIDE, MAX_CROP_SIDE), interpolation=cv2.INTER_AREA)
    # crop pixel centre c -> window pixel (c + 0.5) / factor - 0.5 -> source + (x0, y0)
    offset = 0.5 / factor - 0.5
    affine = np.array([[1 / factor, 0, offset + x0], [0, 1 / factor, offset + y0]])

    def to_crop(points: np.ndarray) -> np.ndarray:
        return ((points - [x0 + offset, y0 + offset]) * factor).astype(np.float32)

    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(num_keypoints, 3)
    clean = np.asarray(ann.get("keypoints_clean") or kp[:, :2].ravel(), dtype=np.float64).reshape(num_keypoints, 2)
    x, y, w, h = ann["bbox"]
    box = np.array([*to_crop(np.array([x, y])), w * factor, h * factor], dtype=np.float32)
    ok, png = cv2.imencode(".png", crop)
    if not ok:
        raise DataError(f"annotation {ann['id']}: the crop could not be encoded")
    return {
        "image": png.tobytes(),
        "crop_h": crop.shape[0],
        "crop_w": crop.shape[1],
        "keypoints": to_crop(kp[:, :2]).ravel().tolist(),
        "keypoints_clean": to_crop(clean).ravel().tolist(),
        "visibility": kp[:, 2].astype(np.int8).tolist(),
        "box_in_crop": box.tolist(),
        "affine": affine.ravel().tolist(),
    }


# ---------------------------------------------------------------- writing shards
class ShardWriter:
    """Rolls Parquet files `<folder>/part-NNNNN.parquet` so none exceeds `max_bytes` (row groups stay whole)."""

    def __init__(self, folder: str, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.fs, _ = filesystem(folder)
        self.shards: list[dict] = []
        self._rows: list[dict] = []
        self._file = self._writer = None
        self._bytes = 0
        self._pending = 0

    def add(self, row: dict) -> None:
        """Buffer a row; a row group closes at ROWS_PER_GROUP rows or a quarter of max_bytes of images,
        so that every shard holds several whole groups and stays under max_bytes."""
        self._rows.append(row)
        self._pending += len(row["image"]) + 64 * len(row["keypoints"])
        if len(self._rows) >= ROWS_PER_GROUP or self._pending >= self.max_bytes // 4:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self._rows, schema=SCHEMA), buffer)
        estimate = buffer.tell()
        # keep 5% for the footer (schema + row-group metadata) written on close
        if self._writer is not None and self._bytes + estimate > 0.95 * self.max_bytes:
            self._close()
        if self._writer is None:
            path = join(self.folder, f"part-{len(self.shards):05d}.parquet")
            _, fs_path = filesystem(path)
            self.fs.makedirs(self.fs._parent(fs_path), exist_ok=True)
            self._file = self.fs.open(fs_path, "wb")
            self._writer = pq.ParquetWriter(self._file, SCHEMA)
            self.shards.append({"file": path, "rows": 0})
            self._bytes = 0
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=SCHEMA))
        self.shards[-1]["rows"] += len(self._rows)
        self._bytes = self._file.tell()
        self._rows = []
        self._pending = 0

    def _close(self) -> None:
        self._writer.close()
        self._file.close()
        self._writer = self._file = None

    def close(self) -> list[dict]:
        self._flush()
        if self._writer is not None:
            self._close()
        return self.shards


def resolve_skeleton(skeleton: str | Skeleton, labels: dict, source: str) -> Skeleton:
    """A built-in skeleton by name, else the annotations' own category of that name (a custom skeleton)."""
    if isinstance(skeleton, Skeleton):
        return skeleton
    if skeleton in SKELETONS:
        return get_skeleton(skeleton)
    for category in labels["categories"]:
        if category.get("name") == skeleton:
            return skeleton_from_coco_category(category)
    raise DataError(
        f"{source}: skeleton {skeleton!r} is neither built in ({', '.join(sorted(SKELETONS))}) nor a category "
        f"of the annotations ({', '.join(str(c.get('name')) for c in labels['categories'])})"
    )


def instances(data: dict, skeleton: Skeleton) -> Iterator[tuple[dict, dict]]:
    """(image, annotation) pairs of categories with the skeleton's keypoints, >= 1 of them labelled."""
    categories = {
        c["id"] for c in data["categories"]
        if len(c["keypoints"]) == skeleton.num_keypoints
        and (skeleton.name in SKELETONS or tuple(c["keypoints"]) == skeleton.keypoints)
    }
    images = {img["id"]: img for img in data["images"]}
    for ann in data["annotations"]:
        if ann["category_id"] in categories and not ann.get("iscrowd") and ann.get("num_keypoints", 1) > 0:
            yield images[ann["image_id"]], ann


def derive_dataset(
    kind: str,
    annotations_path: str | Path,
    out_url: str,
    data: FamilyData,
    split: SplitParams,
    skeleton: str | Skeleton = "hand21",
    repo_root: str | Path | None = None,
) -> dict[str, Any]:
    """Write `<out>/<split>/part-*.parquet` and then `<out>/card.json`; returns the card.

    Any earlier dataset at out_url is unpublished (card first) and replaced. On failure nothing
    readable is left behind.
    """
    if kind not in CROP_KINDS:
        raise DataError(f"derive: dataset kind {kind!r} is not implemented yet; kinds: {', '.join(CROP_KINDS)}")
    annotations_path = Path(annotations_path)
    labels = load_annotations(annotations_path)
    sk = resolve_skeleton(skeleton, labels, str(annotations_path))
    K = sk.num_keypoints
    pairs = list(instances(labels, sk))
    if not pairs:
        raise DataError(f"{annotations_path}: no annotation with {K} keypoints ({sk.name}) to derive from")
    assignment = split_units([img for img, _ in pairs], split)

    card_url = join(out_url, CARD)
    if exists(card_url):
        clear(card_url)
    clear(out_url)
    started = time.time()
    try:
        writers = {name: ShardWriter(join(out_url, name), data.max_shard_bytes) for name in ("train", "val")}
        counts: dict[str, int] = defaultdict(int)
        units: dict[str, set] = defaultdict(set)
        source = FrameSource(annotations_path)
        for image, ann in pairs:
            name = assignment[unit_of(image)]
            if data.max_samples is not None and counts[name] >= data.max_samples:
                continue
            row = crop_sample(source.frame(image), ann, K, data.shard_margin)
            row.update(
                sample_id=ann["id"], image_id=image["id"], annotation_id=ann["id"],
                sequence=str(image.get("sequence") or ""), subject=str(image.get("subject") or ""),
                frame_index=-1 if image.get("frame_index") is None else int(image["frame_index"]),
            )
            writers[name].add(row)
            counts[name] += 1
            units[name].add(str(unit_of(image)))
        shards = {name: writer.close() for name, writer in writers.items()}
        card = {
            "kind": kind,
            "skeleton": {
                "name": sk.name, "keypoints": list(sk.keypoints), "edges": [list(e) for e in sk.edges],
                "flip_pairs": [list(p) for p in sk.flip_pairs],
            },
            "splits": {
                name: {
                    "samples": counts[name],
                    "units": sorted(units[name]),
                    "shards": [
                        {"file": Path(s["file"]).name, "rows": s["rows"], "sha256": sha256_file(s["file"])}
                        for s in shards[name]
                    ],
                }
                for name in shards
            },
            "counts": {name: counts[name] for name in shards},
            "source": {
                "annotations": str(annotations_path.name),
                "annotations_sha256": sha256_file(annotations_path),
                "kind": "synthetic" if all(img.get("source") == "synthetic" for img, _ in pairs) else "real",
                "data": data.model_dump(mode="json"),
                "split": split.model_dump(mode="json"),
            },
            "format": {"schema": [f.name for f in SCHEMA], "max_shard_bytes": data.max_shard_bytes},
            "seconds": round(time.time() - started, 2),
        }
        write_json_atomic(card_url, card)
    except BaseException:
        clear(out_url)
        raise
    return card
