"""One controlled handmle training run outside Ray: train on a derived `topdown_crop` dataset's train split
(decoded once, augmented per epoch as the loader does) with the train stage's step function in one process,
then score PCK@0.2 of every stage on its test split as the train stage validates.

The factor table behind the smoke recipe is a set of these runs, one change each, at one thread:

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/handmle_recipe.py --tag baseline
    ... --epochs 40 --milestones 32          ... --model '{"loss_type": "mle", "flow_mode": "residual"}'
    ... --url <bigger derived set> --test-url data/derived/handmle   ... --frac 0.5 (half the sequences)

Prints one JSON line (test PCK, per-stage PCK, train seconds, steps) and appends it to --log.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from _common import (
    crop_batch,
    crop_scores,
    emit,
    parse_recipe_args,
    read_rows,
    recipe_parser,
    start_recipe,
    train_epoch,
)
from poseops.config import AugmentParams
from poseops.datasets.loader import (
    decode,
    flip_permutation,
    load_split_arrays,
    make_sample,
    read_card,
)
from poseops.models import handmle
from poseops.tasks.topdown_crop import predict_crops


def parse_args() -> argparse.Namespace:
    p = recipe_parser(__doc__, batch=32, shift=0.05, jitter=0.2, wd=0.0)
    p.add_argument(
        "--url", default="data/derived/handmle", help="derived dataset to train and test on"
    )
    p.add_argument("--test-url", default="", help="also score the test split of this dataset")
    p.add_argument(
        "--score-train",
        action="store_true",
        help="also score the train split (unaugmented): underfitting against generalisation",
    )
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--milestones", default="11", help="comma-separated epochs where lr x 0.1")
    p.add_argument("--rot", type=float, default=45.0)
    p.add_argument("--scale", default="0.85,1.15")
    p.add_argument(
        "--flip",
        action="store_true",
        help="mirror half the crops, as the loader's augment.flip does",
    )
    p.add_argument(
        "--frac", type=float, default=1.0, help="fraction of the training sequences kept"
    )
    p.add_argument("--model", default="{}", help="JSON overrides of the smoke preset")
    p.add_argument("--margin", type=float, default=1.25)
    p.add_argument("--log", default=".poseops/handmle_recipe.jsonl")
    p.add_argument(
        "--mirror-left",
        default="",
        help="raw labels.jsonl with each sequence's side: left-hand crops are mirrored (train and test), so every "
        "hand is a right hand",
    )
    p.add_argument(
        "--overlay", default="", help="write the first 8 test crops' predictions here (PNG)"
    )
    return parse_recipe_args(p)


def score(model: handmle.HandMLE, split: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """PCK@0.2 (keypoint box) and each stage's, rounded to 4 places."""
    stages = {name: round(value, 4) for name, value in crop_scores(model, split, 0.2).items()}
    return stages.pop("pck"), stages


def left_sequences(labels_jsonl: str) -> set[str]:
    with open(labels_jsonl) as lines:
        return {record["id"] for record in map(json.loads, lines) if record["side"] == "left"}


def mirror(image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: images [...,S,S,3], keypoints [...,K,2] px, x -> S - 1 - x (pixel centres at integers)."""
    size = image.shape[-2]
    flipped = keypoints.copy()
    flipped[..., 0] = size - 1 - flipped[..., 0]
    return np.ascontiguousarray(image[..., ::-1, :]), flipped


def write_overlay(model: handmle.HandMLE, split: dict[str, np.ndarray], path: str) -> None:
    import cv2

    from poseops.skeletons import get_skeleton
    from poseops.viz.overlay import sample_grid

    pred, _ = predict_crops(model, split["image"][:8])
    crops = [np.ascontiguousarray(image[..., ::-1]) for image in split["image"][:8]]
    cv2.imwrite(
        path,
        sample_grid(crops, list(pred), get_skeleton("hand21"), list(split["visibility"][:8] > 0)),
    )


def main() -> None:
    a = parse_args()
    start_recipe(a.seed)
    overrides = dict(handmle.PRESETS["smoke"], loss_type="integral_l1", input_size=a.size)
    overrides.update(json.loads(a.model))
    model = handmle.HandMLE(handmle.Config(**overrides))
    rows = read_rows(a.url, "train")
    if a.frac < 1:  # whole sequences, so that fewer means less diverse, not sparser
        sequences = sorted({row["sequence"] for row in rows})
        keep = set(sequences[: max(1, int(len(sequences) * a.frac))])
        rows = [row for row in rows if row["sequence"] in keep]
    pixels = [decode(row) for row in rows]
    augment = AugmentParams(
        rotation_deg=a.rot,
        scale=tuple(float(x) for x in a.scale.split(",")),
        shift=a.shift,
        color_jitter=a.jitter,
        flip=a.flip,
    )
    permutation = flip_permutation(read_card(a.url), "hand21") if a.flip else None
    test = load_split_arrays(a.url, "test", a.size, a.margin)
    lefts = left_sequences(a.mirror_left) if a.mirror_left else set()
    if lefts:
        flip = np.array([row["sequence"] in lefts for row in read_rows(a.url, "test")])
        assert len(flip) == len(test["image"])
        image = test["image"][flip]
        test["image"][flip], test["keypoints"][flip] = mirror(image, test["keypoints"][flip])
        test["keypoints_clean"][flip] = mirror(image, test["keypoints_clean"][flip])[1]
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.wd)
    milestones = [int(x) for x in a.milestones.split(",") if x]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)

    def epoch_batches(epoch: int):
        """Whole batches of the train rows in a seeded order per epoch, augmented (left hands mirrored)."""
        rng = np.random.default_rng([a.seed, epoch])
        order = rng.permutation(len(rows))
        for first in range(0, max(1, len(order) - a.batch + 1), a.batch):
            samples = [
                make_sample(rows[i], a.size, a.margin, augment, rng, permutation, pixels[i])
                for i in order[first : first + a.batch]
            ]
            for i, sample in zip(order[first : first + a.batch], samples):
                if rows[i]["sequence"] in lefts:  # image [S,S,3] here
                    sample["image"], sample["keypoints"] = mirror(
                        sample["image"], sample["keypoints"]
                    )
            yield crop_batch(samples)

    start, steps = time.perf_counter(), 0
    for epoch in range(a.epochs):
        steps += len(train_epoch("topdown_crop", model, epoch_batches(epoch), optimizer))
        schedule.step()
    train_s = time.perf_counter() - start
    model.eval()
    pck, stages = score(model, test)
    if a.overlay:
        write_overlay(model, test, a.overlay)
    result = {
        "tag": a.tag,
        "pck": pck,
        "stages": stages,
        "train_s": round(train_s, 1),
        "steps": steps,
        "n_train": len(rows),
    }
    if a.test_url:
        result["pck_other_test"], result["stages_other_test"] = score(
            model, load_split_arrays(a.test_url, "test", a.size, a.margin)
        )
    if a.score_train:
        result["pck_train"], result["stages_train"] = score(
            model, load_split_arrays(a.url, "train", a.size, a.margin)
        )
    result["args"] = vars(a)
    emit(result, a.log)


if __name__ == "__main__":
    main()
