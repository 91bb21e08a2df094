"""Controlled hrnet_am smoke-recipe runs on a derived topdown_crop dataset (no Ray, 1 thread): train with
the train stage's step function in one process (benchmarks/_common.py) on crops drawn through the
loader's `make_sample` (augmentation as given), then score the test split as `evaluate` does (flip test,
PCK@0.1 of the person box) beside the mean-pose and untrained baselines, with argmax and DARK decoding.
Appends one JSON line per run to results.jsonl beside --out.

    PYTHONPATH=platform nice -n 10 python benchmarks/hrnet_am_recipe.py --data data/derived/hrnet_am \
        --epochs 10 --batch 8 --lr 1.2e-2 --milestone 0.8
"""

import os
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
    train_steps,
)
from poseops.config import AugmentParams
from poseops.datasets.loader import (
    decode,
    flip_permutation,
    load_split_arrays,
    make_sample,
    read_card,
)
from poseops.models import create_model
from poseops.skeletons import get_skeleton
from poseops.tasks.topdown_crop import mean_pose, score_predictions

# PCK@0.1 of the person box, as `evaluate` scores hrnet_am
SCORING = {"threshold": 0.1, "normaliser": "bbox"}


def main() -> None:
    p = recipe_parser(__doc__, batch=32, shift=0.05, jitter=0.2, wd=0.0)
    p.add_argument("--data", default="data/derived/hrnet_am")
    p.add_argument("--out", default=".poseops/hrnet_am_recipe")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--stem", type=int, default=32)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--am", default="4")
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--decode", default="argmax")
    p.add_argument("--epochs", type=float, default=8)
    p.add_argument(
        "--milestone", type=float, default=0.75, help="fraction of steps at which lr x0.1"
    )
    p.add_argument("--rot", type=float, default=30.0)
    p.add_argument("--scale", type=float, nargs=2, default=[0.85, 1.15])
    p.add_argument("--flip", type=int, default=1)
    p.add_argument("--noaug", action="store_true")
    p.add_argument("--max-train", type=int, default=None)
    a = parse_recipe_args(p)

    os.makedirs(a.out, exist_ok=True)
    start_recipe(a.seed)
    started = time.time()
    card = read_card(a.data)
    rows = read_rows(a.data, "train", a.max_train)
    pixels = [decode(row) for row in rows]
    augment = (
        None
        if a.noaug
        else AugmentParams(
            rotation_deg=a.rot,
            scale=tuple(a.scale),
            shift=a.shift,
            color_jitter=a.jitter,
            flip=bool(a.flip),
        )
    )
    perm = flip_permutation(card, "coco17") if (augment and augment.flip) else None
    overrides = dict(
        input_size=a.size,
        width=a.width,
        stem_width=a.stem,
        blocks=a.blocks,
        am_layout=a.am,
        heatmap_sigma=a.sigma,
        decode=a.decode,
    )
    model = create_model("hrnet_am", "smoke", **overrides)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = int(round(a.epochs * len(rows) / a.batch))
    rng = np.random.default_rng(a.seed)

    def batches():
        """Endless batches of the train rows: each pass in a fresh seeded order, augmented."""
        order = []
        while True:
            if len(order) < a.batch:
                order += list(rng.permutation(len(rows)))
            pick, order = order[: a.batch], order[a.batch :]
            yield crop_batch(
                [
                    make_sample(
                        rows[i], a.size, 1.25, augment, rng if augment else None, perm, pixels[i]
                    )
                    for i in pick
                ]
            )

    t0 = time.time()
    c0 = time.process_time()
    # one endless epoch: the order is redrawn whenever it runs short of a batch
    terms = train_steps("topdown_crop", model, [batches()], opt, steps, int(steps * a.milestone))
    losses = [step["loss"] for step in terms]
    train_s = time.time() - t0
    train_cpu = time.process_time() - c0

    def cached(split):
        path = os.path.join(a.out, f"cache_{split}_{a.size}.npz")
        if not os.path.exists(path):
            np.savez(path, **load_split_arrays(a.data, split, a.size, 1.25))
        return dict(np.load(path))

    test = cached("test")
    train = cached("train")
    names = list(get_skeleton("coco17").keypoints)
    trained = crop_scores(model, test, **SCORING)["pck"]
    torch.manual_seed(a.seed)
    untrained = crop_scores(create_model("hrnet_am", "smoke", **overrides), test, **SCORING)["pck"]
    pose = mean_pose(train["keypoints"], train["visibility"] > 0)
    poses = np.broadcast_to(pose, test["keypoints"].shape).copy()
    res = {
        "trained": trained,
        "mean_pose": score_predictions(poses, test, names, **SCORING)["pck"].value,
        "untrained": untrained,
    }
    if a.decode == "argmax":
        model.config.decode = "dark"
        res["trained_dark"] = crop_scores(model, test, **SCORING)["pck"]
        model.config.decode = "argmax"
    res.update(
        train_cpu_s=round(train_cpu),
        steps=steps,
        train_s=round(train_s),
        total_s=round(time.time() - started),
        loss=[float(np.mean(losses[:10])), float(np.mean(losses[-20:]))],
        args=vars(a),
    )
    emit(res, os.path.join(a.out, "results.jsonl"))
    if os.environ.get("SAVE_MODEL"):
        torch.save(model.state_dict(), os.environ["SAVE_MODEL"])


if __name__ == "__main__":
    main()
