"""GPU training (`pytest -m gpu`): every family at paper size under bf16 autocast on one GPU, and DDP
over NCCL where two GPUs exist. Skipped without CUDA."""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch
import torch.multiprocessing as mp

from helpers_ddp import ddp_worker, trainable_families
from poseops.models import create_model
from poseops.tasks import get_task
from poseops.train.ddp import StepOptions, run_epoch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
FAMILIES = trainable_families()
STEPS = 50


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_one_worker_bf16_paper_size_learns_a_batch(name):
    """50 bf16 steps on one repeated batch at the paper preset: finite losses that fall."""
    family = FAMILIES[name]
    task = get_task(family.task)
    device = torch.device("cuda")
    torch.manual_seed(0)
    core = create_model(family.model, "paper").to(device)
    batch = task.example_batch(core, 4, seed=0)
    optimizer = torch.optim.Adam(core.parameters(), lr=1e-4)
    steps = run_epoch(
        task, core, [batch] * STEPS, optimizer, device, StepOptions(bf16=True, accumulate=1)
    )
    losses = [s["loss"] for s in steps]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    assert all(p.dtype == torch.float32 for p in core.parameters())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_workers_nccl_keep_replicas_identical(tmp_path):
    mp.spawn(
        ddp_worker,
        args=(2, free_port(), str(tmp_path), sorted(FAMILIES), "nccl", "paper", True),
        nprocs=2,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1]) and len(ranks[0]) == len(FAMILIES)
    for case, result in ranks[0].items():
        assert all(math.isfinite(x) for x in result["losses"]), case
        assert result["checksum"] == pytest.approx(ranks[1][case]["checksum"], rel=1e-5), case
