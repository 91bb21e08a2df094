"""The `bottomup_image` kind: one row per image with every person in it, and its loader.

Row (BOTTOMUP_SCHEMA): the image's bytes as the source holds them (a still JPEG/PNG file unchanged, a
video frame as PNG), width, height, and per person (P of them, in annotation order) keypoints [P*K*2]
source px, keypoints_clean [P*K*2], visibility [P*K] (COCO 0/1/2), boxes [P*4] (x, y, w, h), plus
ignore_boxes [Q*4] (crowd boxes and the image's ignore_regions) and the ids. No targets: the family's
codec makes them after augmentation. Images without a labelled person are left out.

Loader geometry: the whole image is letterboxed into an S x S input (longer side -> S, centred, zero
border), then rotated / scaled / shifted / flipped about the input's centre (poseops.datasets.transforms:
OpenCV pixel convention, pixel i's centre at x = i). `affine_to_source` maps input px back to source px.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from poseops.config import AugmentParams
from poseops.datasets.bottomup_rows import BOTTOMUP_SCHEMA, card_fields, image_rows, plan_images
from poseops.datasets.loader import (
    ShardStream,
    decode,
    draw_augmentation,
    flip_affine,
    flip_permutation,
    jitter_colour,
    read_card,
    read_row_group,
    row_groups,
)
from poseops.datasets.transforms import apply_affine, box_affine, compose, invert_affine, warp
from poseops.errors import DataError

__all__ = [
    "BOTTOMUP_SCHEMA", "BottomUpDataset", "card_fields", "image_rows", "letterbox_affine", "load_bottomup_split",
    "make_image_sample", "pad_people", "plan_images", "row_people",
]


# ---------------------------------------------------------------- one sample
def row_people(row: dict, num_keypoints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """keypoints [P,K,2] source px, keypoints_clean [P,K,2], visibility [P,K] of a bottom-up row."""
    P, K = int(row["num_people"]), num_keypoints
    keypoints = np.asarray(row["keypoints"], dtype=np.float64).reshape(P, K, 2)
    clean = np.asarray(row["keypoints_clean"], dtype=np.float64).reshape(P, K, 2)
    visibility = np.asarray(row["visibility"], dtype=np.float32).reshape(P, K)
    return keypoints, clean, visibility


def letterbox_affine(
    width: int, height: int, input_size: int, rotation_deg: float = 0.0, scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0), flip: bool = False,
) -> np.ndarray:
    """Source px -> input px: the image's longer side fills the input, centred; then the augmentation."""
    affine = box_affine((0.0, 0.0, float(width), float(height)), 1.0, input_size, rotation_deg, scale, shift)
    return compose(flip_affine(input_size), affine) if flip else affine


def make_image_sample(
    row: dict,
    num_keypoints: int,
    input_size: int,
    augment: AugmentParams | None = None,
    rng: np.random.Generator | None = None,
    flip_order: np.ndarray | None = None,
) -> dict[str, Any]:
    """One bottom-up row -> numpy sample (unpadded): image RGB uint8 [S,S,3], keypoints [P,K,2] input px,
    visibility [P,K] (0 where a keypoint leaves the input), affine_to_source [2,3], num_people, ids."""
    image = decode(row)
    height, width = image.shape[:2]
    keypoints, _, visibility = row_people(row, num_keypoints)
    rotation, scale, shift, flip = draw_augmentation(augment, rng, flip_order is not None)
    affine = letterbox_affine(width, height, input_size, rotation, scale, shift, flip)
    pixels = warp(image, affine, input_size)[..., ::-1]  # BGR -> RGB
    keypoints = apply_affine(keypoints, affine)
    if flip:
        keypoints, visibility = keypoints[:, flip_order], visibility[:, flip_order]
    pixels = jitter_colour(pixels, augment, rng)
    inside = (keypoints >= 0).all(-1) & (keypoints <= input_size - 1).all(-1)
    visibility = np.where(inside, visibility, 0.0).astype(np.float32)
    return {
        "image": np.ascontiguousarray(pixels),
        "keypoints": keypoints.astype(np.float32),
        "visibility": visibility,
        "num_people": int(row["num_people"]),
        "affine_to_source": invert_affine(affine).astype(np.float32),
        "sample_id": int(row["sample_id"]),
    }


def pad_people(sample: dict[str, Any], max_people: int) -> dict[str, Any]:
    """Pad (or cut, keeping annotation order) keypoints / visibility to [max_people, K, ...]; padding has
    visibility 0 and num_people counts the real persons kept."""
    keypoints, visibility = sample["keypoints"], sample["visibility"]
    P, K = visibility.shape
    kept = min(P, max_people)
    padded_kp = np.zeros((max_people, K, 2), np.float32)
    padded_vis = np.zeros((max_people, K), np.float32)
    padded_kp[:kept], padded_vis[:kept] = keypoints[:kept], visibility[:kept]
    return {**sample, "keypoints": padded_kp, "visibility": padded_vis, "num_people": kept}


# ---------------------------------------------------------------- the loader
class BottomUpDataset(ShardStream):
    """A bottom-up split streamed as augmented whole images (same order, shuffle and share rules as
    CropDataset). Yields torch tensors:

      image [3,S,S] uint8 RGB, keypoints [P_max,K,2] float32 input px, visibility [P_max,K] float32
      (COCO 0/1/2; 0 for padding and for keypoints outside the input), num_people int64 (persons kept),
      affine_to_source [2,3] float32 (input px -> source px), sample_id int64 (= image id).

    P_max: `max_people`, else the card's (the most persons in one image of the dataset). flip needs the
    skeleton's flip pairs (a built-in `skeleton` name, else the card's).
    """

    def __init__(
        self,
        url: str,
        split: str,
        input_size: int,
        augment: AugmentParams | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skeleton: str | None = None,
        max_people: int | None = None,
    ):
        super().__init__(url, split, seed, rank, world_size)
        if self.card.get("kind") != "bottomup_image":
            raise DataError(f"{url}: a {self.card.get('kind')} dataset, not bottomup_image")
        self.input_size, self.augment = input_size, augment
        self.num_keypoints = len(self.card["skeleton"]["keypoints"])
        self.max_people = max_people or int(self.card.get("max_people", 1))
        self.flip_order = flip_permutation(self.card, skeleton) if augment and augment.flip else None

    def _tensors(self, row: dict, rng: np.random.Generator) -> dict[str, Any]:
        sample = make_image_sample(row, self.num_keypoints, self.input_size, self.augment, rng, self.flip_order)
        sample = pad_people(sample, self.max_people)
        sample["image"] = sample["image"].transpose(2, 0, 1).copy()
        return {k: torch.as_tensor(v) for k, v in sample.items()}


def load_bottomup_split(url: str, split: str, input_size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """A bottom-up split for evaluation, in card order, without augmentation; one dict per image:

      image [S,S,3] uint8 RGB (letterboxed), keypoints [P,K,2] input px, visibility [P,K],
      affine_to_source [2,3] (input px -> source px; apply with transforms.apply_affine),
      keypoints_source / keypoints_clean_source [P,K,2] source px, boxes_source [P,4] (x, y, w, h),
      ignore_boxes [Q,4], num_people, sample_id, image_id, annotation_ids [P], width, height,
      sequence, subject, frame_index.
    """
    card = read_card(url, "bottomup_image")
    K = len(card["skeleton"]["keypoints"])
    out = []
    for path, group in row_groups(url, split, card):
        for row in read_row_group(path, group):
            sample = make_image_sample(row, K, input_size)
            source_kp, clean, _ = row_people(row, K)
            sample.update(
                keypoints_source=source_kp.astype(np.float32),
                keypoints_clean_source=clean.astype(np.float32),
                boxes_source=np.asarray(row["boxes"], np.float32).reshape(-1, 4),
                ignore_boxes=np.asarray(row["ignore_boxes"], np.float32).reshape(-1, 4),
                image_id=int(row["image_id"]), annotation_ids=list(row["annotation_ids"]),
                width=int(row["width"]), height=int(row["height"]),
                sequence=row["sequence"], subject=row["subject"], frame_index=int(row["frame_index"]),
            )
            out.append(sample)
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise DataError(f"{url}: split {split!r} is empty")
    return out
