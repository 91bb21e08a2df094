"""Shards and the crop kinds: Parquet files of bounded size on any fsspec store, the split rule, frame
reading, and the `topdown_crop` rows (crops with a margin, keypoints, visibility and the
crop->source affine). `derive_dataset` (poseops.datasets.derive) runs every kind, on Ray or in-process,
and writes `card.json` last.

A crop is cut at the source's resolution (an integer-aligned window, zero-padded outside the image), so
evaluation on shards and the endpoint on the original image see the very same pixels. Only a window
longer than `MAX_CROP_SIDE` is resized down, and its affine records that.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poseops.annotations.internal import resolve_image_path
from poseops.config import SplitParams
from poseops.datasets.transforms import cut_window, integer_window
from poseops.errors import DataError
from poseops.skeletons import (
    SKELETONS,
    Skeleton,
    categories_for_skeleton,
    get_skeleton,
    skeleton_from_coco_category,
)
from poseops.storage import filesystem, join

CARD = "card.json"
MAX_CROP_SIDE = 512
ROWS_PER_GROUP = 64

SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("image_id", pa.int64()),
        ("annotation_id", pa.int64()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("frame_index", pa.int64()),
        (
            "image",
            pa.binary(),
        ),  # the crop, PNG (default, lossless) or JPEG (options crop_format="jpeg")
        ("crop_h", pa.int32()),
        ("crop_w", pa.int32()),
        ("keypoints", pa.list_(pa.float32())),  # K*2, crop pixels
        (
            "keypoints_clean",
            pa.list_(pa.float32()),
        ),  # K*2, crop pixels (= keypoints where no truth is known)
        ("visibility", pa.list_(pa.int8())),  # K, COCO 0/1/2
        ("box_in_crop", pa.list_(pa.float32())),  # x, y, w, h
        ("affine", pa.list_(pa.float64())),  # crop -> source, 2x3 row-major
    ]
)


# ---------------------------------------------------------------- splits
def split_units(images: list[dict], split: SplitParams) -> dict[Any, str]:
    """Unit (subject, else sequence, else image id; see `unit_of`) -> 'train' | 'val' | 'test'; a unit
    never spans splits.

    Subjects come first: a synthetic hand identity (or a person) appears in several sequences, and
    grouping by subject keeps all of them, hence every one of its sequences, in one split.
    """
    return split_keys([unit_of(img, split.by) for img in images], split)


SPLITS = ("train", "val", "test")


def split_keys(units: list[str], split: SplitParams) -> dict[str, str]:
    """Unit key -> 'train' | 'val' | 'test': a seeded permutation of the sorted distinct keys; its first
    round(n * test_fraction) go to 'test' (at least one when test_fraction > 0 and n >= 3), the next
    round(n * val_fraction) to 'val' (at least one when two or more units remain), the rest to 'train'.

    The test units depend only on the units, the seed and test_fraction, never on val_fraction."""
    units = sorted(set(units), key=str)
    rng = np.random.default_rng(split.seed)
    order = [units[i] for i in rng.permutation(len(units))]
    n = len(units)
    n_test = max(1, round(n * split.test_fraction)) if split.test_fraction > 0 and n >= 3 else 0
    rest = n - n_test
    n_val = min(rest - 1, max(1, round(n * split.val_fraction))) if rest > 1 else 0
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return dict(zip(order, names, strict=True))


def unit_of(image: dict, by: str = "subject") -> str:
    """The split unit of an image: by "subject", its subject (else its sequence, else the image); by
    "sequence", its sequence (else the image)."""
    source = image.get("source") or ""
    if by == "subject" and image.get("subject"):
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
                raise DataError(
                    f"{path}: image of record {image['id']} cannot be decoded (corrupt or empty)"
                )
            return pixels
        if self._video != path:
            from poseops.capture.common import read_video

            self._frames, self._video = read_video(path), path
        index = int(image["frame_index"])
        if index >= len(self._frames):
            raise DataError(
                f"{path}: record {image['id']} asks for frame {index}, the video has {len(self._frames)}"
            )
        return self._frames[index]

    def encoded(self, image: dict) -> tuple[bytes, str]:
        """(bytes, "jpeg" | "png"): a still image's file as it is, a video frame as PNG."""
        if image.get("frame_index") is None:
            path = resolve_image_path(self.annotations_path, image)
            if not path.is_file():
                raise DataError(f"{path}: image of record {image['id']} not found")
            data = path.read_bytes()
            if data[:3] == b"\xff\xd8\xff":
                return data, "jpeg"
            if data[:8] == b"\x89PNG\r\n\x1a\n":
                return data, "png"
            return encode_png(
                self.frame(image), f"image {image['id']}"
            ), "png"  # other formats: re-encode
        return encode_png(self.frame(image), f"image {image['id']}"), "png"


def encode_png(pixels: np.ndarray, what: str) -> bytes:
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        raise DataError(f"{what}: could not be encoded as PNG")
    return png.tobytes()


# ---------------------------------------------------------------- one sample
CROP_FORMATS = ("png", "jpeg")
JPEG_QUALITY = 95


def encode_crop(crop: np.ndarray, crop_format: str, what: str) -> bytes:
    """PNG (lossless: the loader sees the source's very pixels) or JPEG quality 95 (several times smaller
    and faster to decode; a second lossy generation for JPEG sources)."""
    if crop_format not in CROP_FORMATS:
        raise DataError(
            f"derive: crop_format {crop_format!r} is not one of {', '.join(CROP_FORMATS)}"
        )
    if crop_format == "png":
        return encode_png(crop, what)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"{what}: could not be encoded as JPEG")
    return data.tobytes()


def crop_sample(
    pixels: np.ndarray, ann: dict, num_keypoints: int, margin: float, crop_format: str = "png"
) -> dict[str, Any]:
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
    clean = np.asarray(ann.get("keypoints_clean") or kp[:, :2].ravel(), dtype=np.float64).reshape(
        num_keypoints, 2
    )
    x, y, w, h = ann["bbox"]
    box = np.array([*to_crop(np.array([x, y])), w * factor, h * factor], dtype=np.float32)
    return {
        "image": encode_crop(crop, crop_format, f"annotation {ann['id']}"),
        "crop_h": crop.shape[0],
        "crop_w": crop.shape[1],
        "keypoints": to_crop(kp[:, :2]).ravel().tolist(),
        "keypoints_clean": to_crop(clean).ravel().tolist(),
        "visibility": kp[:, 2].astype(np.int8).tolist(),
        "box_in_crop": box.tolist(),
        "affine": affine.ravel().tolist(),
    }


# ---------------------------------------------------------------- writing shards
def row_bytes(row: dict) -> int:
    """A generous estimate of a row's stored size (binary fields whole, 8 bytes a list element)."""
    size = 0
    for value in row.values():
        if isinstance(value, (bytes, bytearray, str)):
            size += len(value)
        elif isinstance(value, (list, tuple)):
            size += 8 * len(value)
        else:
            size += 8
    return size


class HashingFile:
    """A write-only file wrapper that hashes what passes through (so shards are not read back for checksums)."""

    def __init__(self, file):
        self.file, self.digest = file, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def writable(self) -> bool:
        return True


class ShardWriter:
    """Rolls Parquet files `<folder>/<prefix>-NNNN.parquet` so none exceeds `max_bytes` (row groups stay whole;
    a single row larger than max_bytes still gets a file of its own).

    `close()` returns [{"file": url, "rows": n, "row_groups": g, "sha256": hex}] in writing order.
    """

    def __init__(
        self, folder: str, max_bytes: int, schema: pa.Schema = SCHEMA, prefix: str = "part"
    ):
        self.folder, self.max_bytes, self.schema, self.prefix = folder, max_bytes, schema, prefix
        self.fs, _ = filesystem(folder)
        self.shards: list[dict] = []
        self._rows: list[dict] = []
        self._file: HashingFile | None = None
        self._writer = None
        self._bytes = 0
        self._pending = 0

    def add(self, row: dict) -> None:
        """Buffer a row; a row group closes at ROWS_PER_GROUP rows or a quarter of max_bytes,
        so that every shard holds several whole groups and stays under max_bytes."""
        self._rows.append(row)
        self._pending += row_bytes(row)
        if len(self._rows) >= ROWS_PER_GROUP or self._pending >= self.max_bytes // 4:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        estimate = buffer.tell()
        # keep 5% for the footer (schema + row-group metadata) written on close
        if self._writer is not None and self._bytes + estimate > 0.95 * self.max_bytes:
            self._close()
        if self._writer is None:
            path = join(self.folder, f"{self.prefix}-{len(self.shards):04d}.parquet")
            _, fs_path = filesystem(path)
            self.fs.makedirs(self.fs._parent(fs_path), exist_ok=True)
            self._file = HashingFile(self.fs.open(fs_path, "wb"))
            self._writer = pq.ParquetWriter(self._file, self.schema)
            self.shards.append({"file": path, "rows": 0, "row_groups": 0})
            self._bytes = 0
        self._writer.write_table(table)
        self.shards[-1]["rows"] += len(self._rows)
        self.shards[-1]["row_groups"] += 1
        self._bytes = self._file.tell()
        self._rows = []
        self._pending = 0

    def _close(self) -> None:
        self._writer.close()
        self._file.close()
        self.shards[-1]["sha256"] = self._file.digest.hexdigest()
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


def skeleton_categories(categories: list[dict], skeleton: Skeleton) -> set[int]:
    """Ids of the categories whose keypoints are the skeleton's (see poseops.skeletons.categories_for_skeleton)."""
    return categories_for_skeleton(categories, skeleton)


def instances(data: dict, skeleton: Skeleton) -> Iterator[tuple[dict, dict]]:
    """(image, annotation) pairs of categories with the skeleton's keypoints, >= 1 of them labelled."""
    categories = skeleton_categories(data["categories"], skeleton)
    images = {img["id"]: img for img in data["images"]}
    for ann in data["annotations"]:
        if (
            ann["category_id"] in categories
            and not ann.get("iscrowd")
            and ann.get("num_keypoints", 1) > 0
        ):
            yield images[ann["image_id"]], ann


# ---------------------------------------------------------------- topdown_crop rows (poseops.tasks.topdown_crop)
def plan_crops(labels: dict, skeleton: Skeleton, options: dict) -> list[dict]:
    """One item per person instance: {"unit", "sample_id", "image", "annotation"} (see poseops.datasets.derive)."""
    return [
        {
            "unit": unit_of(image),
            "sequence_unit": unit_of(image, "sequence"),
            "sample_id": int(ann["id"]),
            "image": image,
            "annotation": ann,
        }
        for image, ann in instances(labels, skeleton)
    ]


def crop_rows(items: list[dict], context) -> Iterator[dict]:
    """Shard rows (SCHEMA) of crop items; context: poseops.datasets.derive.RowContext."""
    source = FrameSource(Path(context.annotations_path))
    for item in items:
        image, ann = item["image"], item["annotation"]
        row = crop_sample(
            source.frame(image),
            ann,
            context.num_keypoints,
            context.shard_margin,
            context.options.get("crop_format", "png"),
        )
        row.update(
            sample_id=ann["id"],
            image_id=image["id"],
            annotation_id=ann["id"],
            **image_ids(image),
        )
        yield row


def image_ids(image: dict) -> dict[str, Any]:
    """The id columns every kind carries: sequence, subject, frame_index (-1 for a still image)."""
    return {
        "sequence": str(image.get("sequence") or ""),
        "subject": str(image.get("subject") or ""),
        "frame_index": -1 if image.get("frame_index") is None else int(image["frame_index"]),
    }


def derive_dataset(*args, **kwargs) -> dict[str, Any]:
    """See poseops.datasets.derive.derive_dataset (kept here for existing imports)."""
    from poseops.datasets.derive import derive_dataset as derive

    return derive(*args, **kwargs)
