"""The per-worker training loop Ray Train runs: data share, DDP model, optimiser, a resumable checkpoint
per epoch."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from poseops.models import build_from_config
from poseops.tasks import get_task
from poseops.train.ddp import StepOptions, distribute, run_epoch, unwrap
from poseops.train.state import (
    TrainState,
    load_train_state,
    newest_complete_checkpoint,
    rng_state,
    save_train_state,
    set_rng_state,
)


def mean_terms(steps: list[dict[str, float]]) -> dict[str, float]:
    """Each named loss term but the total, averaged over an epoch's steps, as `train_<term>`."""
    names = sorted({name for terms in steps for name in terms} - {"loss"})
    return {
        f"train_{name}": sum(t[name] for t in steps if name in t)
        / max(1, sum(name in t for t in steps))
        for name in names
    }


def at_plateau(
    values: list[float], window: int | None, min_delta: float, min_epochs: int = 0
) -> bool:
    """True when at least `min_epochs` values exist and the last `window` lie within `min_delta` of each
    other (`min_epochs` keeps a flat start, before learning takes off, from counting as a plateau)."""
    if window is None or len(values) < max(window, min_epochs):
        return False
    recent = values[-window:]
    return max(recent) - min(recent) < min_delta


def checkpoint_to_restore(registered: Any, cfg: dict[str, Any], world: int) -> Any:
    """What a (re)started worker group continues from, decided by rank 0 for every rank: the newest
    whole checkpoint in the run's storage folder (it may be one Ray Train had not registered when a
    worker or the driver died), else Ray Train's restored checkpoint `registered`, else None.
    Returns a checkpoint URL, a `ray.train.Checkpoint` or None."""
    newest = None
    if cfg.get("storage_path") and cfg.get("run_name"):
        newest = newest_complete_checkpoint(cfg["storage_path"], cfg["run_name"])
    return share_from_rank0(newest, world) or registered


@contextlib.contextmanager
def checkpoint_folder(checkpoint: Any) -> Iterator[Path]:
    """A local folder with the files of a `ray.train.Checkpoint` or of the checkpoint folder at a
    path or fsspec URL."""
    if not isinstance(checkpoint, str):
        with checkpoint.as_directory() as folder:
            yield Path(folder)
        return
    from poseops.storage import filesystem

    fs, path = filesystem(checkpoint)
    with tempfile.TemporaryDirectory(prefix="poseops-resume-") as tmp:
        for remote in fs.ls(path, detail=False):
            fs.get_file(remote, str(Path(tmp) / remote.rstrip("/").rsplit("/", 1)[-1]))
        yield Path(tmp)


def make_deterministic(seed: int, threads: int) -> None:
    """Same seed, worker count and thread count -> the same weights and metrics on the same machine type.

    CPU kernels reduce in an order fixed by the thread count, so it is pinned; deterministic
    algorithms are asked for with `warn_only` (an op without a deterministic kernel warns, naming
    itself, instead of failing the run). Data order and augmentation are seeded in the datasets.
    """
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


def agree(flag: bool, world: int) -> bool:
    """Rank 0's decision, shared with every worker (only rank 0 validates)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor([1 if flag else 0])
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def share_from_rank0(value: Any, world: int) -> Any:
    """Rank 0's `value` (any picklable object), on every rank."""
    if world == 1:
        return value
    import torch.distributed as dist

    values = [value]
    dist.broadcast_object_list(values, src=0)
    return values[0]


def gather(value: Any, world: int) -> list[Any]:
    """Every rank's `value`, in rank order (on every rank)."""
    if world == 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world
    dist.all_gather_object(values, value)
    return values


def worker_device(use_gpu: bool) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """Run on every Ray Train worker. `cfg` is plain data (see fit.make_loop_config); what depends on
    the kind of data (loader, loss terms, validation) comes from the family's task, `get_task(cfg["task"])`.

    After each epoch rank 0 reports a checkpoint (weights, optimiser, scheduler, loader position, every
    rank's RNG states: poseops.train.state); a restarted worker group (FailureConfig) or a restored run
    (`poseops train --resume`) continues from the run's newest whole checkpoint (checkpoint_to_restore)."""
    import ray
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    make_deterministic(cfg["seed"], cfg["threads_per_worker"])
    hooks, val_metric = get_task(cfg["task"]), cfg["val_metric"]
    device = worker_device(cfg.get("use_gpu", False))
    options = StepOptions(bf16=cfg.get("bf16", False), accumulate=cfg.get("accumulate", 1))

    core = build_from_config(cfg["model_name"], cfg["model_config"])
    dataset, loader = hooks.train_loader(cfg, core, rank, world)
    val = hooks.load_validation(cfg) if rank == 0 else None
    core = core.to(device)  # before the optimiser, so that restored optimiser state lands there too
    optimizer = torch.optim.Adam(core.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, cfg["lr_milestones"], cfg["lr_gamma"]
    )
    start, epochs_so_far = 0, []
    restored = checkpoint_to_restore(ray.train.get_checkpoint(), cfg, world)
    if restored is not None:
        with checkpoint_folder(restored) as folder:
            state = load_train_state(folder, core, optimizer, schedule)
        start, epochs_so_far = state.epoch, state.history
        if state.world_size == world:
            set_rng_state(state.rng[rank])
        if rank == 0:
            source = restored if isinstance(restored, str) else restored.path
            print(f"resumed after epoch {start} from {source}", flush=True)
    val_history = [e[val_metric] for e in epochs_so_far]
    where = gather((ray.get_runtime_context().get_node_id(), os.getpid()), world)
    nodes, pids = [node for node, _ in where], [pid for _, pid in where]
    model = distribute(core, device, world)
    if cfg.get("compile", False):
        model = torch.compile(model)

    for epoch in range(start, cfg["epochs"]):
        dataset.set_epoch(epoch)
        steps = run_epoch(hooks, model, loader, optimizer, device, options)
        losses = [terms["loss"] for terms in steps]
        schedule.step()
        metrics = {
            "epoch": epoch,
            "train_loss": sum(losses) / max(1, len(losses)),
            "lr": schedule.get_last_lr()[0],
        }
        metrics.update(mean_terms(steps))
        rngs = gather(rng_state(), world)
        if rank == 0:
            metrics.update(
                hooks.validate(core if device.type == "cpu" else copy.deepcopy(core).cpu(), val)
            )
            val_history.append(metrics[val_metric])
            metrics["plateau"] = at_plateau(
                val_history,
                cfg.get("plateau_window"),
                cfg["plateau_min_delta"],
                cfg.get("plateau_min_epochs", 0),
            )
            epochs_so_far.append(dict(metrics))  # saved in the checkpoint's train_state.json
            print(
                f"epoch {epoch + 1}/{cfg['epochs']}: train_loss {metrics['train_loss']:.4f} "
                f"{val_metric} {metrics[val_metric]:.3f} ({len(losses)} steps)",
                flush=True,
            )
            with tempfile.TemporaryDirectory() as tmp:
                save_train_state(
                    Path(tmp),
                    unwrap(core).state_dict(),
                    {
                        "family": cfg["family"],
                        "model": cfg["model_name"],
                        "config": core.config.model_dump(mode="json"),
                    },
                    optimizer,
                    schedule,
                    TrainState(epoch + 1, cfg["seed"], world, rngs, epochs_so_far, nodes, pids),
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if agree(rank == 0 and metrics["plateau"], world):
            if rank == 0:
                print(
                    f"validation plateau after epoch {epoch + 1}: last {cfg['plateau_window']} {val_metric} "
                    f"within {cfg['plateau_min_delta']}",
                    flush=True,
                )
            break
