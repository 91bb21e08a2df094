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
    "BOTTOMUP_SCHEMA",
    "BottomUpDataset",
    "card_fields",
    "image_rows",
    "letterbox_affine",
    "load_bottomup_split",
    "make_image_sample",
    "pad_people",
    "plan_images",
    "row_people",
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
    width: int,
    height: int,
    input_size: int,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """Source px -> input px: the image's longer side fills the input, centred; then the augmentation."""
    affine = box_affine(
        (0.0, 0.0, float(width), float(height)), 1.0, input_size, rotation_deg, scale, shift
    )
    return compose(flip_affine(input_size), affine) if flip else affine


def person_window(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: int,
    window: int,
    rng: np.random.Generator | None,
) -> tuple[int, int]:
    """Top-left corner (x, y) of a `window`-side square inside the S x S input, around one person.

    keypoints [P,K,2] input px, visibility [P,K]. A random person with a labelled keypoint inside the
    input is picked; the window is centred on the mean of those keypoints, moved by up to a quarter
    window each way (rng), and kept inside the input. Without rng: the first such person, unmoved; with
    nobody inside: the input's centre.
    """
    inside = (visibility > 0) & (keypoints >= 0).all(-1) & (keypoints <= input_size - 1).all(-1)
    people = np.flatnonzero(inside.any(-1))
    if len(people):
        person = int(rng.choice(people)) if rng is not None else int(people[0])
        centre = keypoints[person][inside[person]].mean(0)
    else:
        centre = np.full(2, (input_size - 1) / 2.0)
    if rng is not None:
        centre = centre + rng.uniform(-window / 4, window / 4, 2)
    corner = np.clip(np.round(centre - (window - 1) / 2.0), 0, input_size - window)
    return int(corner[0]), int(corner[1])


def whole_people(keypoints: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """[P,3] (centre x, centre y, keypoint box area) of each person from every labelled keypoint
    (keypoints [P,K,2], visibility [P,K]), also those outside the input: the codec's centre of a person
    the input's border cuts (see `encode_targets(whole_people=...)`)."""
    from poseops.codecs.bottomup import keypoint_box_areas, person_centres

    people = torch.as_tensor(
        np.concatenate([keypoints, visibility[..., None]], axis=-1), dtype=torch.float32
    )
    centres, _ = person_centres(people)
    return torch.cat([centres, keypoint_box_areas(people)[:, None]], dim=1).numpy()


def make_image_sample(
    row: dict,
    num_keypoints: int,
    input_size: int,
    augment: AugmentParams | None = None,
    rng: np.random.Generator | None = None,
    flip_order: np.ndarray | None = None,
    window: int | None = None,
) -> dict[str, Any]:
    """One bottom-up row -> numpy sample (unpadded): image RGB uint8 [S,S,3], keypoints [P,K,2] input px,
    visibility [P,K] (0 where a keypoint leaves the input), whole_people [P,3] (`whole_people`: centre
    and keypoint box area from every labelled keypoint, inside the input or not), affine_to_source
    [2,3], num_people, ids.

    window: cut a `window`-side square (S below is then `window`) out of the S x S input around a random
    person (`person_window`), at the input's scale: a model trained on such windows sees people at the
    size it will see them in whole S x S inputs, for a fraction of the compute per image.
    """
    image = decode(row)
    height, width = image.shape[:2]
    keypoints, _, visibility = row_people(row, num_keypoints)
    rotation, scale, shift, flip = draw_augmentation(augment, rng, flip_order is not None)
    affine = letterbox_affine(width, height, input_size, rotation, scale, shift, flip)
    keypoints = apply_affine(keypoints, affine)
    out_size = input_size
    if window is not None and window < input_size:
        x0, y0 = person_window(keypoints, visibility, input_size, window, rng)
        affine = compose(np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), affine)
        keypoints, out_size = keypoints - np.array([x0, y0]), window
    pixels = warp(image, affine, out_size)[..., ::-1]  # BGR -> RGB
    if flip:
        keypoints, visibility = keypoints[:, flip_order], visibility[:, flip_order]
    pixels = jitter_colour(pixels, augment, rng)
    whole = whole_people(keypoints, visibility)
    inside = (keypoints >= 0).all(-1) & (keypoints <= out_size - 1).all(-1)
    visibility = np.where(inside, visibility, 0.0).astype(np.float32)
    return {
        "image": np.ascontiguousarray(pixels),
        "keypoints": keypoints.astype(np.float32),
        "visibility": visibility,
        "whole_people": whole,
        "num_people": int(row["num_people"]),
        "affine_to_source": invert_affine(affine).astype(np.float32),
        "sample_id": int(row["sample_id"]),
    }


def pad_people(sample: dict[str, Any], max_people: int) -> dict[str, Any]:
    """Pad (or cut, keeping annotation order) keypoints / visibility to [max_people, K, ...]; padding has
    visibility 0 and num_people counts the real persons kept."""
    keypoints, visibility, whole = sample["keypoints"], sample["visibility"], sample["whole_people"]
    P, K = visibility.shape
    kept = min(P, max_people)
    padded_kp = np.zeros((max_people, K, 2), np.float32)
    padded_vis = np.zeros((max_people, K), np.float32)
    padded_whole = np.zeros((max_people, 3), np.float32)
    padded_kp[:kept], padded_vis[:kept], padded_whole[:kept] = (
        keypoints[:kept],
        visibility[:kept],
        whole[:kept],
    )
    return {
        **sample,
        "keypoints": padded_kp,
        "visibility": padded_vis,
        "whole_people": padded_whole,
        "num_people": kept,
    }


# ---------------------------------------------------------------- the loader
class BottomUpDataset(ShardStream):
    """A bottom-up split streamed as augmented whole images (same order, shuffle and share rules as
    CropDataset). Yields torch tensors:

      image [3,S,S] uint8 RGB, keypoints [P_max,K,2] float32 input px, visibility [P_max,K] float32
      (COCO 0/1/2; 0 for padding and for keypoints outside the input), whole_people [P_max,3] float32
      (centre x, y and keypoint box area from all labelled keypoints), num_people int64 (persons kept),
      affine_to_source [2,3] float32 (input px -> source px), sample_id int64 (= image id).

    window: yield `window`-side squares cut around a random person from each S x S input (see
    `make_image_sample`); S below is then `window`.

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
        window: int | None = None,
    ):
        super().__init__(url, split, seed, rank, world_size)
        if self.card.get("kind") != "bottomup_image":
            raise DataError(f"{url}: a {self.card.get('kind')} dataset, not bottomup_image")
        self.input_size, self.augment, self.window = input_size, augment, window
        self.num_keypoints = len(self.card["skeleton"]["keypoints"])
        self.max_people = max_people or int(self.card.get("max_people", 1))
        self.flip_order = (
            flip_permutation(self.card, skeleton) if augment and augment.flip else None
        )

    def _tensors(self, row: dict, rng: np.random.Generator) -> dict[str, Any]:
        sample = make_image_sample(
            row,
            self.num_keypoints,
            self.input_size,
            self.augment,
            rng,
            self.flip_order,
            self.window,
        )
        sample = pad_people(sample, self.max_people)
        sample["image"] = sample["image"].transpose(2, 0, 1).copy()
        return {k: torch.as_tensor(v) for k, v in sample.items()}


def load_bottomup_split(
    url: str, split: str, input_size: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """A bottom-up split for evaluation, in card order, without augmentation; one dict per image:

      image [S,S,3] uint8 RGB (letterboxed), keypoints [P,K,2] input px, visibility [P,K],
      affine_to_source [2,3] (input px -> source px; apply with transforms.apply_affine),
      keypoints_source / keypoints_clean_source [P,K,2] source px, boxes_source [P,4] (x, y, w, h),
      ignore_boxes [Q,4], num_people, sample_id, image_id, annotation_ids [P], width, height,
      sequence, subject, frame_index.

    limit: at most this many images, spread evenly over the split (images floor(i * count / limit) for
    i < limit), so a capped evaluation still covers its sequences and views rather than the first few.
    """
    card = read_card(url, "bottomup_image")
    K = len(card["skeleton"]["keypoints"])
    count = int(card.get("counts", {}).get(split) or 0)
    wanted = {i * count // limit for i in range(limit)} if limit and limit < count else None
    out, index = [], -1
    for path, group in row_groups(url, split, card):
        for row in read_row_group(path, group):
            index += 1
            if wanted is not None and index not in wanted:
                continue
            sample = make_image_sample(row, K, input_size)
            source_kp, clean, _ = row_people(row, K)
            sample.update(
                keypoints_source=source_kp.astype(np.float32),
                keypoints_clean_source=clean.astype(np.float32),
                boxes_source=np.asarray(row["boxes"], np.float32).reshape(-1, 4),
                ignore_boxes=np.asarray(row["ignore_boxes"], np.float32).reshape(-1, 4),
                image_id=int(row["image_id"]),
                annotation_ids=list(row["annotation_ids"]),
                width=int(row["width"]),
                height=int(row["height"]),
                sequence=row["sequence"],
                subject=row["subject"],
                frame_index=int(row["frame_index"]),
            )
            out.append(sample)
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise DataError(f"{url}: split {split!r} is empty")
    return out
