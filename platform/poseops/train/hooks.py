"""What differs between dataset kinds in training: the loader, how a batch becomes a loss, how
validation is measured, and what inference settings a checkpoint records.

    hooks = hooks_for(family.dataset_kind)          # or hooks_for("bottomup_image")
    dataset, loader = hooks.train_loader(cfg, model, rank, world)
    val = hooks.load_validation(cfg)                # rank 0 only
    parts = hooks.train_step(model, batch, optimizer)
    numbers = hooks.validate(model, val)            # {"val_pck": ...} or {"val_ap": ..., "val_count_accuracy": ...}

`cfg` is the plain dict of `fit.make_loop_config`. The loop (`loop.py`) is the same for every kind;
checkpoints are chosen by the family's `val_metric` (`val_<primary_metric>`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from poseops.config import AugmentParams, FamilyParams
from poseops.errors import ConfigError


@dataclass(frozen=True)
class TaskHooks:
    name: str
    train_loader: Callable[[dict, nn.Module, int, int], tuple[Any, Any]]  # -> (dataset with set_epoch, DataLoader)
    load_validation: Callable[[dict], Any]
    train_step: Callable[..., dict[str, float]]  # (model, batch, optimizer) -> {"loss", ...}
    validate: Callable[[nn.Module, Any], dict[str, float]]
    inference: Callable[[FamilyParams], dict[str, Any]]  # -> the checkpoint's extra.inference


# ---------------------------------------------------------------- top-down crops (hand_crop, topdown_crop)
def _crop_loader(cfg: dict, model: nn.Module, rank: int, world: int):
    from torch.utils.data import DataLoader

    from poseops.datasets.loader import CropDataset

    dataset = CropDataset(
        cfg["dataset_url"], "train", cfg["input_size"], cfg["crop_margin"],
        augment=AugmentParams(**cfg["augment"]), seed=cfg["seed"], rank=rank, world_size=world,
    )
    return dataset, DataLoader(dataset, batch_size=max(1, cfg["batch_size"] // world), num_workers=cfg["loader_workers"])


def _crop_validation(cfg: dict):
    from poseops.datasets.loader import load_split_arrays

    return load_split_arrays(cfg["dataset_url"], "val", cfg["input_size"], cfg["crop_margin"])


def _crop_validate(model: nn.Module, val) -> dict[str, float]:
    from poseops.train.steps import validation_metrics

    return validation_metrics(model, val)


def _crop_train_step(model, batch, optimizer):
    from poseops.train.steps import train_step

    return train_step(model, batch, optimizer)


TOP_DOWN = TaskHooks(
    name="top-down",
    train_loader=_crop_loader,
    load_validation=_crop_validation,
    train_step=_crop_train_step,
    validate=_crop_validate,
    inference=lambda fam: {"crop_margin": fam.data.crop_margin},
)


# ---------------------------------------------------------------- bottom-up whole images (bottomup_image)
VAL_IMAGES = 32  # validation images scored per epoch (the evaluate stage scores the whole split)


def _image_loader(cfg: dict, model: nn.Module, rank: int, world: int):
    from torch.utils.data import DataLoader

    from poseops.datasets.bottomup import BottomUpDataset
    from poseops.models.vmhpe import target_kwargs
    from poseops.train.steps import bottomup_collate, unwrap

    window = cfg.get("train_window")
    dataset = BottomUpDataset(
        cfg["dataset_url"], "train", cfg["input_size"], augment=AugmentParams(**cfg["augment"]),
        seed=cfg["seed"], rank=rank, world_size=world, window=window,
    )
    collate = functools.partial(bottomup_collate, target_kwargs=target_kwargs(unwrap(model).config, window))
    loader = DataLoader(dataset, batch_size=max(1, cfg["batch_size"] // world), num_workers=cfg["loader_workers"],
                        collate_fn=collate)
    return dataset, loader


def _image_validation(cfg: dict):
    from poseops.evaluate.bottomup import load_evaluation_split

    return load_evaluation_split(cfg["dataset_url"], "val", cfg["input_size"], limit=VAL_IMAGES)


def _image_validate(model: nn.Module, val) -> dict[str, float]:
    """AP (no flip test: the evaluate stage adds it) and count accuracy on the validation images."""
    from poseops.evaluate.bottomup import predict_split, score_people
    from poseops.train.steps import unwrap

    core = unwrap(model)
    result = score_people(predict_split(core, val, flip_test=False), val["truth"], core.config.skeleton)
    return {"val_ap": float(result["ap"] or 0.0), "val_count_accuracy": result["count_accuracy"]}


def _image_train_step(model, batch, optimizer):
    from poseops.train.steps import bottomup_train_step

    return bottomup_train_step(model, batch, optimizer)


BOTTOM_UP = TaskHooks(
    name="bottom-up",
    train_loader=_image_loader,
    load_validation=_image_validation,
    train_step=_image_train_step,
    validate=_image_validate,
    inference=lambda fam: {"input_size": int(fam.model.input_size), "flip_test": True},
)

HOOKS: dict[str, TaskHooks] = {"hand_crop": TOP_DOWN, "topdown_crop": TOP_DOWN, "bottomup_image": BOTTOM_UP}


def hooks_for(dataset_kind: str) -> TaskHooks:
    if dataset_kind not in HOOKS:
        raise ConfigError(f"dataset kind {dataset_kind!r}: no training hooks (kinds: {', '.join(sorted(HOOKS))})")
    return HOOKS[dataset_kind]
