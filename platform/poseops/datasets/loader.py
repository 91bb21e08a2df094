"""Stream a derived split into training batches: row groups in a seeded per-epoch order, a shuffle
buffer, a disjoint share per Ray Train worker (and per DataLoader worker), and the families' augmentation (`AugmentParams`).

Samples hold no training targets: the family's codec makes them from keypoints after augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from poseops.config import AugmentParams
from poseops.datasets.transforms import apply_affine, box_affine, compose, invert_affine, warp
from poseops.errors import DataError
from poseops.skeletons import get_skeleton
from poseops.storage import filesystem, join, require_published

SHUFFLE_BUFFER = 1000


def read_card(url: str, kind: str | None = None) -> dict:
    """The dataset's card (a dataset without one does not exist); DataError unless it is of `kind`."""
    card = require_published(url, "card.json")
    if kind is not None and card.get("kind") != kind:
        raise DataError(f"{url}: a {card.get('kind')} dataset, not {kind}")
    return card


def row_groups(url: str, split: str, card: dict | None = None) -> list[tuple[str, int]]:
    """(shard path, row-group index) units of a split, in card order."""
    card = card or read_card(url)
    if split not in card["splits"]:
        raise DataError(f"{url}: no split {split!r}; splits: {', '.join(card['splits'])}")
    units = []
    for shard in card["splits"][split]["shards"]:
        path = join(url, split, shard["file"])
        count = shard.get("row_groups")
        if count is None:  # cards written before row-group counts were recorded
            fs, fs_path = filesystem(path)
            with fs.open(fs_path, "rb") as f:
                count = pq.ParquetFile(f).num_row_groups
        units += [(path, g) for g in range(count)]
    return units


def flip_permutation(card: dict, skeleton: str | None = None) -> np.ndarray:
    """Keypoint order after a horizontal flip: a named built-in skeleton's, else the card's flip pairs
    (so a dataset's own skeleton flips as a built-in one does)."""
    if skeleton is not None:
        return np.asarray(get_skeleton(skeleton).flip_permutation())
    order = np.arange(len(card["skeleton"]["keypoints"]))
    for a, b in card["skeleton"].get("flip_pairs", []):
        order[a], order[b] = b, a
    return order


def read_row_group(path: str, index: int) -> list[dict]:
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as f:
        return pq.ParquetFile(f).read_row_group(index).to_pylist()


def decode(row: dict) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"sample {row.get('sample_id')}: crop image cannot be decoded")
    return image


def norm_size(points: np.ndarray, visible: np.ndarray) -> float:
    """Longer side of the tight box of the visible points (1.0 when fewer than one is visible)."""
    if not visible.any():
        return 1.0
    pts = points[visible]
    return float(max((pts.max(0) - pts.min(0)).max(), 1.0))


def draw_augmentation(
    augment: AugmentParams | None, rng: np.random.Generator | None, can_flip: bool
) -> tuple[float, float, tuple[float, float], bool]:
    """(rotation_deg, scale, shift (fractions of the side), flip) drawn from `augment`'s ranges; identity
    without augment or rng."""
    if augment is None or rng is None:
        return 0.0, 1.0, (0.0, 0.0), False
    rotation = rng.uniform(-augment.rotation_deg, augment.rotation_deg)
    scale = rng.uniform(*augment.scale)
    shift = tuple(rng.uniform(-augment.shift, augment.shift, 2))
    flip = augment.flip and can_flip and rng.random() < 0.5
    return rotation, scale, shift, flip


def flip_affine(input_size: int) -> np.ndarray:
    """Mirror x about the input's centre line (pixel i <-> S-1-i): `poseops.codecs.mirror_x`, and what
    `tensor.flip(-1)` does to an image (tests/unit/test_codecs_flip.py)."""
    return np.array([[-1.0, 0.0, input_size - 1.0], [0.0, 1.0, 0.0]])


def jitter_colour(
    pixels: np.ndarray, augment: AugmentParams | None, rng: np.random.Generator | None
) -> np.ndarray:
    """Per-channel gain and a common bias, both within +-color_jitter (bias in 64ths of full scale)."""
    if augment is None or rng is None or augment.color_jitter <= 0:
        return pixels
    gain = 1.0 + rng.uniform(-augment.color_jitter, augment.color_jitter, 3)
    bias = rng.uniform(-augment.color_jitter, augment.color_jitter) * 64
    # clip(v * gain + bias) for every uint8 value v, applied as a per-channel lookup table (the same
    # numbers as computing it per pixel, at a third of the cost)
    table = np.clip(np.arange(256, dtype=np.float64)[:, None] * gain + bias, 0, 255).astype(
        np.uint8
    )
    return cv2.LUT(np.ascontiguousarray(pixels), table.reshape(256, 1, 3))


def make_sample(
    row: dict,
    input_size: int,
    crop_margin: float,
    augment: AugmentParams | None = None,
    rng: np.random.Generator | None = None,
    flip_permutation: np.ndarray | None = None,
    pixels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One shard row -> model-input sample (numpy): image RGB uint8 [S,S,3], keypoints [K,2] input px, ...

    pixels: the row's image already decoded (BGR [H,W,3]); else row["image"] is decoded.
    """
    image = decode(row) if pixels is None else pixels
    K = len(row["visibility"])
    keypoints = np.asarray(row["keypoints"], dtype=np.float64).reshape(K, 2)
    clean = np.asarray(row["keypoints_clean"], dtype=np.float64).reshape(K, 2)
    visibility = np.asarray(row["visibility"], dtype=np.float32)
    rotation, scale, shift, flip = draw_augmentation(augment, rng, flip_permutation is not None)
    affine = box_affine(row["box_in_crop"], crop_margin, input_size, rotation, scale, shift)
    if flip:
        affine = compose(flip_affine(input_size), affine)
    pixels = warp(image, affine, input_size)[..., ::-1]  # BGR -> RGB
    keypoints, clean = apply_affine(keypoints, affine), apply_affine(clean, affine)
    if flip:
        keypoints, clean, visibility = (
            keypoints[flip_permutation],
            clean[flip_permutation],
            visibility[flip_permutation],
        )
    pixels = jitter_colour(pixels, augment, rng)
    # which keypoints count (loss weight, scoring, norm_size) follows the clean labels: noisy training
    # labels must not change the scored set (tests/unit/test_datasets.py::test_visibility_follows_clean_labels)
    inside = (clean >= 0).all(1) & (clean <= input_size - 1).all(1)
    visibility = np.where(inside, visibility, 0.0).astype(np.float32)
    crop_to_source = np.asarray(row["affine"], dtype=np.float64).reshape(2, 3)
    return {
        "image": np.ascontiguousarray(pixels),
        "keypoints": keypoints.astype(np.float32),
        "keypoints_clean": clean.astype(np.float32),
        "visibility": visibility,
        "norm_size": np.float32(norm_size(clean, visibility > 0)),
        "affine_to_source": compose(crop_to_source, invert_affine(affine)).astype(np.float32),
        "sample_id": np.int64(row["sample_id"]),
    }


class ShardStream(IterableDataset):
    """A split's rows streamed in a seeded per-epoch order; subclasses turn a row into a sample (`_tensors`).

    Row groups are shuffled per epoch (seed, epoch) and dealt to Ray Train ranks and DataLoader workers
    round-robin, so shares are disjoint and their union is the split; a buffer of SHUFFLE_BUFFER samples
    shuffles within them. Only the row groups in the buffer's reach are in memory.
    """

    def __init__(self, url: str, split: str, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__()
        if not 0 <= rank < world_size:
            raise DataError(f"{url}: rank {rank} is outside a world of size {world_size}")
        self.url, self.split, self.seed, self.rank, self.world_size = (
            url,
            split,
            seed,
            rank,
            world_size,
        )
        self.card = read_card(url)
        self.units = row_groups(url, split, self.card)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_units(self) -> list[tuple[str, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.units))
        units = [self.units[i] for i in order][self.rank :: self.world_size]
        info = get_worker_info()
        return units[info.id :: info.num_workers] if info else units

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        buffer: list[dict] = []
        for path, group in self.my_units():
            for row in read_row_group(path, group):
                buffer.append(row)
                if len(buffer) >= SHUFFLE_BUFFER:
                    yield self._tensors(buffer.pop(int(rng.integers(len(buffer)))), rng)
        while buffer:
            yield self._tensors(buffer.pop(int(rng.integers(len(buffer)))), rng)

    def _tensors(self, row: dict, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError


class CropDataset(ShardStream):
    """A crop split streamed as augmented crops; yields torch tensors: image uint8 [3,S,S] RGB,
    keypoints / keypoints_clean [K,2] input px, visibility [K], norm_size, affine_to_source [2,3], sample_id."""

    def __init__(
        self,
        url: str,
        split: str,
        input_size: int,
        crop_margin: float,
        augment: AugmentParams | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skeleton: str | None = None,
    ):
        super().__init__(url, split, seed, rank, world_size)
        self.input_size, self.crop_margin, self.augment = input_size, crop_margin, augment
        self.flip_permutation = (
            flip_permutation(self.card, skeleton) if augment and augment.flip else None
        )

    def _tensors(self, row: dict, rng: np.random.Generator) -> dict[str, Any]:
        sample = make_sample(
            row, self.input_size, self.crop_margin, self.augment, rng, self.flip_permutation
        )
        sample["image"] = sample["image"].transpose(2, 0, 1).copy()
        return {k: torch.as_tensor(v) for k, v in sample.items()}


def load_split_arrays(
    url: str, split: str, input_size: int, crop_margin: float, limit: int | None = None
) -> dict[str, np.ndarray]:
    """A split as stacked numpy arrays in card order, without augmentation (for evaluation).

    image [N,S,S,3] RGB uint8, keypoints / keypoints_clean [N,K,2] input px, visibility [N,K],
    norm_size [N], affine_to_source [N,2,3], sample_id [N].
    """
    samples = []
    for path, group in row_groups(url, split):
        for row in read_row_group(path, group):
            samples.append(make_sample(row, input_size, crop_margin))
            if limit is not None and len(samples) >= limit:
                break
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise DataError(f"{url}: split {split!r} is empty")
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
