"""Data-parallel optimisation over any task: the DDP wrapper, mixed precision and gradient accumulation.

Ray Train's workers (poseops.train.loop) and the Ray-free multi-process tests
(tests/unit/test_train_ddp.py) run the same functions here, so what the tests show holds for training.
DistributedDataParallel averages gradients over the workers (Li et al., 2020, "PyTorch Distributed:
Experiences on Accelerating Data Parallel Training", Sec. 3.2): with each worker on 1/N of a batch the
averaged gradient is the whole batch's for a loss that is a mean over samples (test_gradient_equivalence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class StepOptions:
    """How a worker turns loader batches into optimiser steps.

    bf16: forward and loss under bfloat16 autocast (weights, gradients and the optimiser stay float32).
    accumulate: micro-batches per optimiser step; each micro-batch's loss is divided by it, and DDP
        synchronises gradients on a window's last micro-batch only (`no_sync` before).
    """

    bf16: bool = False
    accumulate: int = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = model.module if hasattr(model, "module") else model._orig_mod
    return model


def uses_all_parameters(model: nn.Module) -> bool:
    """The model's own word on whether its loss reaches every parameter under its config (a model
    attribute `uses_all_parameters`; a model without one says yes)."""
    return bool(getattr(unwrap(model), "uses_all_parameters", True))


def distribute(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """`model` on `device`, wrapped in DistributedDataParallel when `world` > 1 (the process group must
    exist). `find_unused_parameters` only where the config leaves a branch out of the loss
    (`uses_all_parameters`): it costs a graph traversal per step."""
    model = model.to(device)
    if world == 1:
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=not uses_all_parameters(model),
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to `device`; the batch itself on CPU."""
    if device.type == "cpu":
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def _with_last(items: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """(item, is_last) pairs, looking one item ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def single_sample(batch: Any) -> bool:
    """A loader batch of one sample (its `image` has batch size 1)."""
    image = batch.get("image") if isinstance(batch, dict) else None
    return isinstance(image, torch.Tensor) and image.ndim > 0 and image.shape[0] == 1


def run_epoch(
    task,
    model: nn.Module,
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    options: StepOptions = StepOptions(),
) -> list[dict[str, float]]:
    """One pass over `batches`: the task's loss terms per micro-batch (floats, before the division by
    `accumulate`). The optimiser steps after every `accumulate` micro-batches and after the last one.

    Workers may hold different numbers of batches (the loader deals whole row groups); under DDP the
    pass runs inside `Join`, which shadows a finished worker's gradient all-reduces with zeros so the
    others do not wait forever (the averaged gradient still divides by the whole world).
    """
    distributed = isinstance(model, DistributedDataParallel)
    join = Join([model]) if distributed else contextlib.nullcontext()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16)
    steps: list[dict[str, float]] = []
    # A worker's last batch can hold one sample (its share of the split is dealt by row groups);
    # BatchNorm cannot train on it (it raises), so it is left out.
    batches = (batch for batch in batches if not single_sample(batch))
    with join:
        for index, (batch, last) in enumerate(_with_last(batches)):
            window_end = last or (index + 1) % options.accumulate == 0
            if index % options.accumulate == 0:
                optimizer.zero_grad(set_to_none=True)
            sync = contextlib.nullcontext() if window_end or not distributed else model.no_sync()
            with sync:
                with autocast:
                    terms = task.train_losses(model, to_device(batch, device))
                loss = (
                    terms["loss"] if options.accumulate == 1 else terms["loss"] / options.accumulate
                )
                loss.backward()
            if window_end:
                optimizer.step()
            steps.append({name: float(value.detach()) for name, value in terms.items()})
    return steps
