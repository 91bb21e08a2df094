"""Multi-process DDP runs without Ray: each family under each value of its model Config's switches
(every `Literal` field), through poseops.train.ddp as Ray Train's workers run it."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import torch
import torch.distributed as dist

from poseops.errors import ConfigError
from poseops.families import families
from poseops.models import create_model, model_entry, resolve_config
from poseops.tasks import get_task
from poseops.train.ddp import StepOptions, distribute, run_epoch


def switches(model_name: str) -> list[dict[str, typing.Any]]:
    """One override per value of every Literal field of the model's Config (a loss or branch switch)."""
    overrides = []
    for field, info in model_entry(model_name).config_class.model_fields.items():
        if typing.get_origin(info.annotation) is typing.Literal:
            overrides += [{field: value} for value in typing.get_args(info.annotation)]
    return overrides


def valid(model_name: str, override: dict[str, typing.Any]) -> bool:
    """Whether the tiny preset takes `override` (the model Config's validators agree)."""
    try:
        resolve_config(model_name, "tiny", **override)
    except ConfigError:
        return False
    return True


def switch_cases(model_name: str) -> list[dict[str, typing.Any]]:
    """Few valid configs that together take every value of every switch that the tiny preset takes
    alone: case i sets each Literal field to its i-th value (cycling through the shorter ones), leaving
    out a value that the config's validators refuse beside the others; a value left out everywhere
    gets a case of its own."""
    fields: dict[str, list[typing.Any]] = {}
    for override in switches(model_name):
        for field, value in override.items():
            fields.setdefault(field, []).append(value)
    count = max((len(values) for values in fields.values()), default=1)
    cases = []
    for i in range(count):
        case: dict[str, typing.Any] = {}
        for field, values in fields.items():
            if valid(model_name, {**case, field: values[i % len(values)]}):
                case[field] = values[i % len(values)]
        cases.append(case)
    for override in switches(model_name):
        covered = any(override.items() <= case.items() for case in cases)
        if not covered and valid(model_name, override):
            cases.append(override)
    return cases


def trainable_families() -> dict[str, typing.Any]:
    """Families whose task can make an example batch and loss terms (the rest cannot train yet)."""
    found = {}
    for name, family in families().items():
        task = get_task(family.task)
        if type(task).example_batch is not type(task).__mro__[-2].example_batch:
            found[name] = family
    return found


def tiny_model(model_name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(model_name, "tiny", **overrides)


def ddp_worker(
    rank: int,
    world: int,
    port: int,
    out: str,
    family_names: list[str],
    backend: str = "gloo",
    preset: str = "tiny",
    bf16: bool = False,
) -> None:
    """torch.multiprocessing.spawn target: 2 steps per (family, switch case) at `world` workers
    (gloo on CPU; nccl on GPU `rank`); writes per rank {case: {"losses", "checksum", "find_unused"}}
    to out/rank<r>.json."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world)
    results = {}
    try:
        for name in family_names:
            family = families()[name]
            task = get_task(family.task)
            cases = switch_cases(family.model) if preset == "tiny" else [{}]
            for override in cases:
                torch.manual_seed(0)
                core = create_model(family.model, preset, **override)
                model = distribute(core, device, world)
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                batches = [
                    task.example_batch(core, 2, seed=100 * step + 2 * rank) for step in range(2)
                ]
                steps = run_epoch(task, model, batches, optimizer, device, StepOptions(bf16=bf16))
                checksum = float(sum(p.detach().double().sum() for p in core.parameters()))
                results[f"{name}:{json.dumps(override)}"] = {
                    "losses": [s["loss"] for s in steps],
                    "checksum": checksum,
                    "find_unused": model.find_unused_parameters,
                }
    finally:
        dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
