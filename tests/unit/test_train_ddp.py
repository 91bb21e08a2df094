"""Data-parallel training without Ray: gradient equivalence, DDP steps at 2 gloo workers for every
family x switch, the find_unused_parameters decision, accumulation and resumable train state."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from helpers_ddp import (
    ddp_worker,
    switch_cases,
    switches,
    tiny_model,
    trainable_families,
    valid,
)
from poseops.tasks import get_task
from poseops.train.ddp import StepOptions, run_epoch, uses_all_parameters
from poseops.train.state import (
    TrainState,
    load_train_state,
    rng_state,
    save_train_state,
    set_rng_state,
)

FAMILIES = trainable_families()
# Settings under which a family's loss is a mean of per-sample terms, so that 2 workers' averaged
# gradient can equal the whole batch's: vmhpe's batch-wide InfoNCE couples every person of a batch
# (van den Oord et al., 2018, Eq. 4, negatives from the whole batch) and its random centre jitter
# draws differently for a half batch; its focal heatmap loss divides by the batch's count of peaks
# (Law, Deng, 2018, "CornerNet", Eq. 1). CID's per-image InfoNCE, no jitter and the MSE heatmap loss
# (over a fixed number of pixels per image) make it per-sample.
PER_SAMPLE = {"vmhpe": {"contrastive": "image", "centre_jitter": 0, "heatmap_loss": "mse"}}


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm stays in eval mode even when the task calls model.train(): its batch statistics
    would otherwise differ between a half batch and the whole one."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train = lambda mode=True, m=module: nn.Module.train(m, False)
            module.eval()
    return model


def gradients(task, model: nn.Module, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    task.train_losses(model, batch)["loss"].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gradient_equivalence(name, one_thread):
    """Mean of the 2 workers' gradients on the two halves of a batch = the whole batch's gradient."""
    family = FAMILIES[name]
    task = get_task(family.task)
    model = freeze_batchnorm(tiny_model(family.model, **PER_SAMPLE.get(name, {})))
    whole = task.example_batch(model, 4, seed=0)
    halves = [task.example_batch(model, 2, seed=0), task.example_batch(model, 2, seed=2)]
    full = gradients(task, model, whole)
    parts = [gradients(task, model, half) for half in halves]
    assert full and set(parts[0]) == set(full)
    scale = max(float(g.abs().max()) for g in full.values())
    for key, grad in full.items():
        averaged = (parts[0][key] + parts[1][key]) / 2
        # float32 sums in a different order: relative 1e-4, absolute 1e-5 of the largest gradient
        torch.testing.assert_close(
            averaged, grad, rtol=1e-4, atol=1e-5 * scale, msg=f"{name} {key}"
        )


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_uses_all_parameters_says_true(name, one_thread):
    """A model's `uses_all_parameters` is False exactly where its loss leaves parameters without a
    gradient (DDP then needs find_unused_parameters; with it on everywhere each step pays for it)."""
    family = FAMILIES[name]
    task = get_task(family.task)
    for override in switch_cases(family.model):
        model = tiny_model(family.model, **override)
        task.train_losses(model, task.example_batch(model, 2))["loss"].backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert uses_all_parameters(model) == (not unused), (override, unused[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_family_and_switch_steps_at_two_gloo_workers(tmp_path):
    mp.spawn(
        ddp_worker, args=(2, free_port(), str(tmp_path), sorted(FAMILIES)), nprocs=2, join=True
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert set(ranks[0]) == set(ranks[1])
    for name in FAMILIES:
        assert any(case.startswith(f"{name}:") for case in ranks[0]), name
    for name, family in FAMILIES.items():  # every value of every switch ran
        ran = [
            json.loads(case.split(":", 1)[1]) for case in ranks[0] if case.startswith(f"{name}:")
        ]
        for override in switches(family.model):
            if valid(family.model, override):  # values that need companion settings are left out
                assert any(override.items() <= config.items() for config in ran), (name, override)
    assert any(r["find_unused"] for r in ranks[0].values())  # handmle without MLE
    assert not all(r["find_unused"] for r in ranks[0].values())
    for case, result in ranks[0].items():
        other = ranks[1][case]
        assert all(torch.isfinite(torch.tensor(result["losses"] + other["losses"]))), case
        assert result["losses"] != other["losses"], case  # each rank saw its own data
        # DDP kept the replicas identical: the same averaged gradient stepped both
        assert result["checksum"] == pytest.approx(other["checksum"], rel=1e-6), case


def test_accumulation_equals_the_big_batch(one_thread):
    """2 micro-batches of 2 with accumulate=2 take the step one batch of 4 takes."""
    family = FAMILIES["handmle"]
    task = get_task(family.task)
    models = [freeze_batchnorm(tiny_model(family.model)) for _ in range(2)]
    optims = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    whole = task.example_batch(models[0], 4, seed=0)
    halves = [task.example_batch(models[0], 2, seed=s) for s in (0, 2)]
    cpu = torch.device("cpu")
    assert len(run_epoch(task, models[0], [whole], optims[0], cpu)) == 1
    assert len(run_epoch(task, models[1], halves, optims[1], cpu, StepOptions(accumulate=2))) == 2
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_steps(one_thread):
    family = FAMILIES["handmle"]
    task = get_task(family.task)
    model = tiny_model(family.model)
    before = [p.detach().clone() for p in model.parameters()]
    steps = run_epoch(
        task,
        model,
        [task.example_batch(model, 2)],
        torch.optim.Adam(model.parameters(), lr=1e-3),
        torch.device("cpu"),
        StepOptions(bf16=True),
    )
    assert torch.isfinite(torch.tensor(steps[0]["loss"]))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_train_state_round_trip_continues_bit_for_bit(tmp_path: Path, one_thread):
    """Save after one step, step again; reload into fresh objects, step: the same weights."""
    family = FAMILIES["handmle"]
    task = get_task(family.task)
    cpu = torch.device("cpu")

    def fresh():
        model = tiny_model(family.model, seed=1)
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, optim, torch.optim.lr_scheduler.MultiStepLR(optim, [1], 0.5)

    model, optim, sched = fresh()
    run_epoch(task, model, [task.example_batch(model, 2, seed=0)], optim, cpu)
    sched.step()
    torch.manual_seed(123)
    save_train_state(
        tmp_path,
        model.state_dict(),
        {"family": "handmle"},
        optim,
        sched,
        TrainState(1, 0, 1, [rng_state()], [{"epoch": 0}]),
    )
    expected_draw = torch.rand(3)
    run_epoch(task, model, [task.example_batch(model, 2, seed=5)], optim, cpu)

    again, optim2, sched2 = fresh()
    state = load_train_state(tmp_path, again, optim2, sched2)
    set_rng_state(state.rng[0])
    assert torch.equal(torch.rand(3), expected_draw)
    assert (state.epoch, state.history, sched2.get_last_lr()) == (
        1,
        [{"epoch": 0}],
        sched.get_last_lr(),
    )
    run_epoch(task, again, [task.example_batch(again, 2, seed=5)], optim2, cpu)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
