"""Controlled hrnet_am smoke-recipe runs on a derived topdown_crop dataset (no Ray, 1 thread): train with
the task's train step on crops drawn through the loader's `make_sample` (augmentation as given), then
score the test split as `evaluate` does (flip test, PCK@0.1 of the person box) beside the mean-pose and
untrained baselines, with argmax and DARK decoding. Appends one JSON line per run to results.jsonl
beside --out.

    PYTHONPATH=platform nice -n 10 python benchmarks/hrnet_am_recipe.py --data data/derived/hrnet_am \
        --epochs 10 --batch 16 --milestone 0.8
"""

import argparse
import json
import os
import time

import numpy as np
import torch

from poseops.config import AugmentParams
from poseops.datasets.loader import (
    decode,
    flip_permutation,
    load_split_arrays,
    make_sample,
    read_card,
    read_row_group,
    row_groups,
)
from poseops.models import create_model
from poseops.skeletons import get_skeleton
from poseops.tasks import get_task
from poseops.tasks.topdown_crop import mean_pose, predict_crops, score_predictions


def main() -> None:
    p = argparse.ArgumentParser()
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
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--milestone", type=float, default=0.75, help="fraction of steps at which lr x0.1"
    )
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--rot", type=float, default=30.0)
    p.add_argument("--scale", type=float, nargs=2, default=[0.85, 1.15])
    p.add_argument("--shift", type=float, default=0.05)
    p.add_argument("--jitter", type=float, default=0.2)
    p.add_argument("--flip", type=int, default=1)
    p.add_argument("--noaug", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--tag", default="")
    a = p.parse_args()

    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    started = time.time()
    card = read_card(a.data)
    rows, pixels = [], []
    for path, g in row_groups(a.data, "train", card):
        for row in read_row_group(path, g):
            pixels.append(decode(row))
            rows.append(row)
            if a.max_train and len(rows) >= a.max_train:
                break
        if a.max_train and len(rows) >= a.max_train:
            break
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
    task = get_task("topdown_crop")
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.wd)
    steps = int(round(a.epochs * len(rows) / a.batch))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * a.milestone)], 0.1)
    rng = np.random.default_rng(a.seed)
    order = []
    losses = []
    t0 = time.time()
    c0 = time.process_time()
    for _ in range(steps):
        if len(order) < a.batch:
            order += list(rng.permutation(len(rows)))
        pick, order = order[: a.batch], order[a.batch :]
        samples = [
            make_sample(rows[i], a.size, 1.25, augment, rng if augment else None, perm, pixels[i])
            for i in pick
        ]
        batch = {
            "image": torch.from_numpy(
                np.stack([s["image"] for s in samples]).transpose(0, 3, 1, 2).copy()
            ),
            "keypoints": torch.from_numpy(np.stack([s["keypoints"] for s in samples])),
            "visibility": torch.from_numpy(np.stack([s["visibility"] for s in samples])),
        }
        losses.append(task.train_step(model, batch, opt)["loss"])
        sched.step()
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
    sc = {"threshold": 0.1, "normaliser": "bbox"}
    pred, _ = predict_crops(model, test["image"])
    torch.manual_seed(a.seed)
    unt, _ = predict_crops(create_model("hrnet_am", "smoke", **overrides), test["image"])
    pose = mean_pose(train["keypoints"], train["visibility"] > 0)
    res = {
        "trained": score_predictions(pred, test, names, **sc)["pck"].value,
        "mean_pose": score_predictions(np.broadcast_to(pose, pred.shape).copy(), test, names, **sc)[
            "pck"
        ].value,
        "untrained": score_predictions(unt, test, names, **sc)["pck"].value,
    }
    if a.decode == "argmax":
        model.config.decode = "dark"
        res["trained_dark"] = score_predictions(
            predict_crops(model, test["image"])[0], test, names, **sc
        )["pck"].value
        model.config.decode = "argmax"
    res.update(
        train_cpu_s=round(train_cpu),
        steps=steps,
        train_s=round(train_s),
        total_s=round(time.time() - started),
        loss=[float(np.mean(losses[:10])), float(np.mean(losses[-20:]))],
        args=vars(a),
    )
    print(json.dumps(res), flush=True)
    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")
    if os.environ.get("SAVE_MODEL"):
        torch.save(model.state_dict(), os.environ["SAVE_MODEL"])


if __name__ == "__main__":
    main()
