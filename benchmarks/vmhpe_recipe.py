"""vmhpe smoke-recipe factors: train on a derived bottom-up dataset with the train stage's step function in one
process (no Ray; benchmarks/_common.py), score the test split.

Prints one JSON line: the settings, test AP / AP50 / count accuracy (at several score thresholds and at the
one picked on the validation images), and seconds. Also scores the same model with whole inputs and with
windows around each true person (`--window-eval`), which measures what the global pooling in MFCM,
channel attention and MFFM sees at evaluation against training.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/vmhpe_recipe.py --data data/derived/vmhpe --steps 540
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from _common import emit, parse_recipe_args, recipe_parser, start_recipe, train_steps
from poseops.config import AugmentParams
from poseops.datasets.bottomup import BottomUpDataset, person_window
from poseops.models import create_model
from poseops.tasks.bottomup_image import (
    bottomup_collate,
    count_accuracy,
    load_evaluation_split,
    predict_split,
    score_people,
)

THRESHOLDS = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


def train(args) -> tuple[torch.nn.Module, float]:
    start_recipe(args.seed)
    overrides = dict(centre_sigma=args.centre_sigma, sigma=args.sigma, input_size=args.input_size)
    overrides.update(contrastive_w=args.contrastive_w, width=args.width)
    if args.components:
        overrides["components"] = args.components
    model = create_model("vmhpe", "smoke", **overrides)
    augment = AugmentParams(
        rotation_deg=args.rotation,
        scale=(1 - args.scale, 1 + args.scale),
        shift=args.shift,
        color_jitter=args.jitter,
        flip=args.flip,
    )
    window = args.window or None
    dataset = BottomUpDataset(
        args.data, "train", args.input_size, augment=augment, seed=args.seed, window=window
    )
    kwargs = model.target_kwargs(window)
    loader = DataLoader(
        dataset, batch_size=args.batch, collate_fn=lambda s: bottomup_collate(s, kwargs)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)

    def epochs():
        """The loader, epoch after epoch, without end."""
        for epoch in itertools.count():
            dataset.set_epoch(epoch)
            yield loader

    started = time.time()
    milestone = int(args.steps * args.decay_at)
    train_steps("bottomup_image", model, epochs(), optimizer, args.steps, milestone)
    return model.eval(), time.time() - started


def window_scores(model, data, window: int) -> dict:
    """Each true person scored from a `window` square cut around it (as training cuts them): PCK@0.1 of that
    person's best-OKS prediction, against the same people scored from the whole input."""
    from poseops.metrics.coco import COCO17_SIGMAS, matched_arrays

    sigmas = np.asarray(COCO17_SIGMAS)
    size = data["input_size"]
    crops, owners = [], []
    for i, item in enumerate(data["truth"]):
        to_input = np.linalg.inv(np.vstack([data["affine_to_source"][i], [0, 0, 1]]))[:2]
        kp = item["keypoints"] @ to_input[:, :2].T + to_input[:, 2]
        vis = np.asarray(item["visibility"])
        for p in range(len(kp)):
            if not (vis[p] > 0).any():
                continue
            x0, y0 = person_window(kp[p : p + 1], vis[p : p + 1], size, window, None)
            crops.append(data["images_rgb"][i][y0 : y0 + window, x0 : x0 + window])
            shift = np.array([[1.0, 0, x0], [0, 1.0, y0]])
            back = data["affine_to_source"][i] @ np.vstack([shift, [0, 0, 1]])
            owners.append((i, p, back))
    split = {
        "images_rgb": np.stack(crops),
        "affine_to_source": np.stack([o[2] for o in owners]),
        "sizes": [data["sizes"][o[0]] for o in owners],
    }
    found = predict_split(model, split, flip_test=False)
    windowed = [
        {
            "keypoints": data["truth"][i]["keypoints"][p : p + 1],
            "visibility": np.asarray(data["truth"][i]["visibility"])[p : p + 1],
            "boxes": np.asarray(data["truth"][i]["boxes"])[p : p + 1],
        }
        for i, p, _ in owners
    ]
    m_win = matched_arrays(found, windowed, sigmas)
    whole = predict_split(model, data, flip_test=False)
    m_whole = matched_arrays(whole, data["truth"], sigmas)

    def pck(m):
        err = np.linalg.norm(m["pred"] - m["gt"], axis=-1) / m["box_size"][:, None]
        vis = m["visibility"] > 0
        return float(((err <= 0.1) & vis).sum() / vis.sum())

    return {"pck01_window": pck(m_win), "pck01_whole": pck(m_whole), "people": len(owners)}


def centre_counts(model, val: dict, test: dict) -> dict:
    """Count accuracy when a person's score is its centre peak alone (not x the mean keypoint peak)."""
    import poseops.models.vmhpe as vmhpe

    original = vmhpe.decode_instances

    def centre_scored(heatmaps, instance_scores, input_size, refine="quadratic"):
        keypoints, keypoint_scores, _ = original(heatmaps, instance_scores, input_size, refine)
        return keypoints, keypoint_scores, instance_scores

    vmhpe.decode_instances = centre_scored
    try:
        val_pred = predict_split(model, val, flip_test=True)
        test_pred = predict_split(model, test, flip_test=True)
    finally:
        vmhpe.decode_instances = original
    grid = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
    val_counts = {t: count_accuracy(val_pred, val["truth"], t) for t in grid}
    picked = max(grid, key=lambda t: (val_counts[t], -abs(t - 0.3)))
    return {
        "test": {t: round(count_accuracy(test_pred, test["truth"], t), 3) for t in grid},
        "val_picked": picked,
    }


def main() -> None:
    p = recipe_parser(__doc__, batch=8, shift=0.0, jitter=0.0, wd=1e-4)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=484)
    p.add_argument("--decay-at", type=float, default=2 / 3)
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--centre-sigma", type=float, default=2.0)
    p.add_argument("--contrastive-w", type=float, default=0.1)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--components", default=None)
    p.add_argument("--rotation", type=float, default=0.0)
    p.add_argument("--scale", type=float, default=0.0)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--eval-images", type=int, default=64)
    p.add_argument(
        "--eval-size", type=int, default=None, help="evaluation input side (default: input size)"
    )
    p.add_argument("--window-eval", action="store_true")
    p.add_argument(
        "--centre-count", action="store_true", help="also count by the centre score alone"
    )
    p.add_argument("--save", default=None)
    p.add_argument("--load", default=None)
    args = parse_recipe_args(p)
    torch.set_num_threads(1)
    if args.load:
        model = torch.load(args.load, weights_only=False).eval()
        seconds = 0.0
    else:
        model, seconds = train(args)
        if args.save:
            torch.save(model, args.save)
    size = args.eval_size or args.input_size
    model.config = model.config.model_copy(update={"input_size": size})
    val = load_evaluation_split(args.data, "val", size, limit=32)
    test = load_evaluation_split(args.data, "test", size, limit=args.eval_images)
    val_pred = predict_split(model, val, flip_test=True)
    test_pred = predict_split(model, test, flip_test=True)
    result = score_people(test_pred, test["truth"])
    val_counts = {t: count_accuracy(val_pred, val["truth"], t) for t in THRESHOLDS}
    picked = max(THRESHOLDS, key=lambda t: (val_counts[t], -abs(t - 0.3)))
    out = {
        "tag": args.tag,
        "args": {k: v for k, v in vars(args).items() if k not in ("save", "load", "tag")},
        "train_s": round(seconds),
        "ap": round(result["ap"], 3),
        "ap50": round(result["ap50"], 3),
        "ar": round(result["ar"], 3),
        "pck_0.1": round(result["pck_0.1"], 3),
        "count_acc@0.3": round(result["count_accuracy"], 3),
        "count_acc": {t: round(count_accuracy(test_pred, test["truth"], t), 3) for t in THRESHOLDS},
        "val_picked_threshold": picked,
        "true_people": [
            int((np.asarray(t["visibility"]) > 0).any(-1).sum()) for t in test["truth"][:16]
        ],
        "found@0.1": [int((np.asarray(q["scores"]) > 0.1).sum()) for q in test_pred[:16]],
        "top_scores": [
            round(float(q["scores"][0]), 2) if len(q["scores"]) else 0 for q in test_pred[:16]
        ],
    }
    if args.centre_count:
        out["centre_count"] = centre_counts(model, val, test)
    if args.window_eval and args.window:
        out["window_eval"] = window_scores(model, test, args.window)
    emit(out)


if __name__ == "__main__":
    main()
