"""vmhpe's loss terms under the two heatmap losses, at initialisation: focal (CornerNet, / positives) against
MSE summed per map (Zhang, He, Wu, 2025, Eq. 29), beside the contrastive term lambda_c multiplies. Mean over
the first batches of the smoke training stream (128-px windows of the derived set; `make demo` derives it).

    OMP_NUM_THREADS=1 python benchmarks/vmhpe_loss_scale.py --data data/derived/vmhpe --batches 4
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from _common import emit
from poseops.config import AugmentParams
from poseops.datasets.bottomup import BottomUpDataset
from poseops.models import create_model, resolve_config
from poseops.tasks.bottomup_image import bottomup_collate, bottomup_losses

PLAIN = AugmentParams(rotation_deg=0.0, scale=(1.0, 1.0), shift=0.0, color_jitter=0.0, flip=False)


def mean_terms(data: str, kind: str, batches: int, window: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(
        "vmhpe", "smoke", input_size=256, centre_sigma=2.0, heatmap_loss=kind
    ).train()
    dataset = BottomUpDataset(data, "train", 256, augment=PLAIN, seed=0, window=window)
    targets = model.target_kwargs(window)
    loader = DataLoader(dataset, batch_size=8, collate_fn=lambda s: bottomup_collate(s, targets))
    sums: dict[str, float] = {}
    for _, batch in zip(range(batches), loader):
        with torch.no_grad():
            for name, value in bottomup_losses(model, batch).items():
                sums[name] = sums.get(name, 0.0) + float(value) / batches
    return {name: round(value, 4) for name, value in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/derived/vmhpe")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--window", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    terms = {
        kind: mean_terms(args.data, kind, args.batches, args.window) for kind in ("focal", "mse")
    }
    weight = resolve_config("vmhpe", "smoke").contrastive_w  # lambda_c, in the weighted "loss"
    share = {
        kind: round(weight * t["loss_contrastive"] / t["loss"], 6) for kind, t in terms.items()
    }
    emit({"terms": terms, f"contrastive_share_at_lambda_{weight:g}": share, "args": vars(args)})


if __name__ == "__main__":
    main()
