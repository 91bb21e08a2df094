"""Pure training and evaluation steps: no Ray, no MLflow, no files."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from poseops.codecs.integral import to_norm
from poseops.families import predict_crops
from poseops.metrics import pck


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One optimisation step on a loader batch; returns the loss and its parts as floats.

    batch: image uint8 [B,3,S,S], keypoints float [B,K,2] (input px), visibility [B,K].
    """
    core = unwrap(model)
    images = core.preprocess(batch["image"])
    target = to_norm(batch["keypoints"], core.config.input_size)
    weight = (batch["visibility"] > 0).float()
    model.train()
    outputs = model(images)
    loss, parts = core.loss(outputs, target, weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), **parts}


def predict_arrays(model: nn.Module, images_rgb: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """images_rgb [N,S,S,3] uint8 -> (keypoints [N,K,2] input px, scores [N,K]); unwraps DDP first."""
    return predict_crops(unwrap(model), images_rgb, batch_size)


def validation_metrics(model: nn.Module, val: dict[str, np.ndarray], threshold: float = 0.2) -> dict[str, float]:
    """PCK@threshold on a validation split held as arrays (see datasets.loader.load_split_arrays)."""
    pred, _ = predict_arrays(model, val["image"])
    gt = val.get("keypoints_clean", val["keypoints"])
    visible = val["visibility"] > 0
    result = pck(pred, gt, visible, val["norm_size"], threshold=threshold)
    return {"val_pck": result.value}


# ---------------------------------------------------------------- bottom-up (whole images, many people)
def people_keypoints(keypoints: torch.Tensor, visibility: torch.Tensor, num_people: torch.Tensor) -> list[torch.Tensor]:
    """Padded batch -> the codec's per-image people: keypoints [B,P_max,K,2] input px, visibility
    [B,P_max,K], num_people [B] -> B tensors [P_b,K,3] (x, y, v)."""
    people = torch.cat([keypoints.float(), visibility.float()[..., None]], dim=-1)
    return [people[b, : int(n)] for b, n in enumerate(num_people)]


def bottomup_collate(samples: list[dict[str, torch.Tensor]], target_kwargs: dict) -> dict[str, torch.Tensor]:
    """A DataLoader collate_fn for bottom-up samples: stacks the images and makes the codec's targets.

    samples: image uint8 [3,S,S], keypoints [P_max,K,2] input px, visibility [P_max,K], num_people [],
    and optionally whole_people [P_max,3] (each person's centre from all its labelled keypoints; see
    `poseops.datasets.bottomup.whole_people`).
    Returns {"image" [B,3,S,S] uint8, "targets": encode_targets(...)} (targets after augmentation).
    """
    from poseops.codecs.bottomup import encode_targets

    batch = {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in ("image", "keypoints", "visibility")}
    num_people = torch.as_tensor([int(s["num_people"]) for s in samples])
    people = people_keypoints(batch["keypoints"], batch["visibility"], num_people)
    whole = None
    if all("whole_people" in s for s in samples):
        whole = [torch.as_tensor(s["whole_people"])[: int(n)] for s, n in zip(samples, num_people)]
    targets = encode_targets(people, **target_kwargs, whole_people=whole)
    return {"image": batch["image"], "num_people": num_people, "targets": targets}


def bottomup_train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One optimisation step on a `bottomup_collate` batch; returns the loss and its parts as floats."""
    core = unwrap(model)
    images = core.preprocess(batch["image"])
    model.train()
    outputs = model(images, batch["targets"])
    loss, parts = core.loss(outputs, batch["targets"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return parts
