"""A resumable training state: what one epoch's Ray Train checkpoint holds beyond the weights.

    <checkpoint>/
      weights.safetensors   the model's state dict (safetensors)
      config.json           {"family", "model", "config"}: what poseops.pipeline.train publishes from
      optimizer.pt          optimiser and LR-scheduler state dicts (tensors, numbers, lists: loaded
                            with torch.load(weights_only=True))
      train_state.json      next epoch (the loader's position: data order is a function of seed and
                            epoch, poseops.datasets.loader.ShardStream), seed, world size, every rank's
                            RNG states (torch, numpy, python), the history of reported epochs

With these, a run resumed from epoch e's checkpoint computes what the uninterrupted run computed after
epoch e, bit for bit on the same machine type (tests/slow/test_train_faults.py).
"""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from poseops.errors import CheckpointError

WEIGHTS, CONFIG, OPTIMIZER, STATE = (
    "weights.safetensors",
    "config.json",
    "optimizer.pt",
    "train_state.json",
)


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy and python RNG states, as JSON-able data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


@dataclass
class TrainState:
    """Where a run stands after `epoch` epochs (so `epoch` is the next one to run)."""

    epoch: int
    seed: int
    world_size: int
    rng: list[dict[str, Any]]  # one per rank
    history: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)  # the Ray node id of each rank (this attempt)
    pids: list[int] = field(default_factory=list)  # the process id of each rank (this attempt)


def save_train_state(
    folder: Path,
    weights: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
) -> None:
    """Write a resumable checkpoint's files into `folder` (a fresh temporary folder that Ray Train
    then persists to the run's storage_path)."""
    save_file(
        {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()},
        str(folder / WEIGHTS),
    )
    (folder / CONFIG).write_text(json.dumps(meta, indent=2))
    scheduler_state = {
        k: dict(v) if isinstance(v, Counter) else v for k, v in scheduler.state_dict().items()
    }
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler_state}, folder / OPTIMIZER
    )
    (folder / STATE).write_text(json.dumps(state.__dict__))


def load_train_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> TrainState:
    """Load weights (strict), optimiser and scheduler state from a checkpoint folder; its TrainState."""
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
        saved = torch.load(folder / OPTIMIZER, map_location="cpu", weights_only=True)
        state = TrainState(**json.loads((folder / STATE).read_text()))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}: not a resumable training checkpoint ({exc})") from None
    optimizer.load_state_dict(saved["optimizer"])
    scheduler_state = dict(saved["scheduler"])
    if isinstance(scheduler_state.get("milestones"), dict):  # MultiStepLR keeps a Counter
        scheduler_state["milestones"] = Counter(
            {int(k): v for k, v in scheduler_state["milestones"].items()}
        )
    scheduler.load_state_dict(scheduler_state)
    return state


def is_complete_checkpoint(fs: Any, folder: str) -> bool:
    """Whether a checkpoint folder in an fsspec filesystem holds all its files, whole: a checkpoint is
    copied to storage file by file, so a driver killed meanwhile can leave a part of one. Checks the
    safetensors header against the file's size and the optimiser zip's end record; reads no tensors."""
    try:
        if not all(fs.exists(f"{folder}/{name}") for name in (WEIGHTS, CONFIG, OPTIMIZER, STATE)):
            return False
        json.loads(fs.cat_file(f"{folder}/{STATE}"))
        with fs.open(f"{folder}/{WEIGHTS}", "rb") as weights:
            (header_size,) = struct.unpack("<Q", weights.read(8))
            header = json.loads(weights.read(header_size))
        end = max(
            (entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
            default=0,
        )
        if fs.size(f"{folder}/{WEIGHTS}") < 8 + header_size + end:
            return False
        size = fs.size(f"{folder}/{OPTIMIZER}")
        tail = fs.cat_file(f"{folder}/{OPTIMIZER}", start=max(0, size - 65557))
        return b"PK\x05\x06" in tail  # the zip's end-of-central-directory record
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False


def checkpoint_states(fs: Any, run_folder: str) -> list[tuple[dict[str, Any], str]]:
    """(train_state.json, checkpoint folder) of each checkpoint in a run's folder of an fsspec filesystem
    whose state file reads; one being written when its writer died may have none yet, and is left out."""
    found = []
    for path in fs.glob(f"{run_folder.rstrip('/')}/checkpoint_*/{STATE}"):
        try:
            found.append((json.loads(fs.cat_file(path)), path.rsplit("/", 1)[0]))
        except (OSError, ValueError):
            continue
    return found


def newest_complete_checkpoint(storage_path: str, run_name: str) -> str | None:
    """URL of a run's newest whole checkpoint folder under `storage_path` (by its epoch), or None.

    Ray Train restores a run from the checkpoints its controller registered; a worker or driver killed
    after a checkpoint reached storage but before the controller registered it leaves that checkpoint
    out, and the run would repeat that epoch (or start over). The training loop restores from this one."""
    from poseops.storage import filesystem

    fs, root = filesystem(storage_path)
    found = [
        (state["epoch"], folder)
        for state, folder in checkpoint_states(fs, f"{root.rstrip('/')}/{run_name}")
        if is_complete_checkpoint(fs, folder)
    ]
    return fs.unstrip_protocol(max(found)[1]) if found else None
