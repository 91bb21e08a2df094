"""The driver side of training without Ray: run names, the run `--resume` picks, storage precedence,
the plain config handed to workers, and `poseops train --resume` with nothing to resume."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from poseops.cli.main import app
from poseops.config import FamilyTrain
from poseops.errors import CheckpointError
from poseops.families import get_family, load_params
from poseops.profiles import write_profile
from poseops.train.fit import fit, latest_run_name, make_loop_config, new_run_name, storage_for


def test_new_run_names_are_fresh_and_sort_in_time_order():
    names = [new_run_name("handmle") for _ in range(3)]
    assert all(n.startswith("handmle-") for n in names) and names == sorted(names)


def test_resume_picks_the_family_s_newest_run(tmp_path):
    for name in (
        "handmle-20261201-100000-000",
        "handmle-20261202-090000-500",
        "vmhpe-20261203-000000-000",
    ):
        (tmp_path / name).mkdir()
    assert latest_run_name(str(tmp_path), "handmle") == "handmle-20261202-090000-500"
    with pytest.raises(CheckpointError, match="no run of family 'lifter'"):
        latest_run_name(str(tmp_path), "lifter")
    with pytest.raises(CheckpointError, match="nowhere"):
        latest_run_name(str(tmp_path / "nowhere"), "handmle")


def test_storage_path_precedence(tmp_path, repo_root):
    params = write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "params.yaml")
    fam = load_params(params).families["handmle"]
    assert storage_for(fam).endswith("ray_results")
    fam = fam.model_copy(
        update={"train": fam.train.model_copy(update={"storage_path": "s3://b/runs"})}
    )
    assert storage_for(fam) == "s3://b/runs"
    assert storage_for(fam, "/elsewhere") == "/elsewhere"
    cfg = make_loop_config(get_family("handmle"), fam, "data/derived/handmle")
    # driver-side settings stay with the driver; step settings reach the workers, and the run's
    # storage folder too (a restarted worker group looks for its newest checkpoint there)
    assert not {"max_failures", "num_workers", "placement_strategy"} & set(cfg)
    assert {"bf16", "accumulate", "compile", "use_gpu"} <= set(cfg)
    cfg = make_loop_config(get_family("handmle"), fam, "data/derived/handmle", "s3://b/runs", "r-1")
    assert (cfg["storage_path"], cfg["run_name"]) == ("s3://b/runs", "r-1")


def test_train_params_are_checked():
    with pytest.raises(ValueError, match="accumulate"):
        FamilyTrain(accumulate=0)
    with pytest.raises(ValueError, match="placement_strategy"):
        FamilyTrain(placement_strategy="EVERYWHERE")


def test_resume_with_no_run_fails_before_ray_starts(tmp_path, repo_root, monkeypatch):
    import ray

    params = write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "params.yaml")
    fam = load_params(params).families["handmle"]
    with pytest.raises(CheckpointError, match="no run of family 'handmle' to resume"):
        fit(get_family("handmle"), fam, str(tmp_path), storage_path=str(tmp_path), resume=True)
    assert not ray.is_initialized()
    shown = CliRunner().invoke(app, ["train", "--help"])
    assert shown.exit_code == 0 and "--resume" in shown.output


def finished_run(storage, name: str, epochs: list[int], plateau_at: int | None = None) -> None:
    """A run folder as Ray Train leaves it: one checkpoint per epoch with its train_state.json."""
    import json

    for epoch in epochs:
        folder = storage / name / f"checkpoint_2026-12-02_09-00-{epoch:02d}.000000"
        folder.mkdir(parents=True)
        history = [{"epoch": e, "plateau": e + 1 == plateau_at} for e in range(epoch)]
        state = {"epoch": epoch, "seed": 0, "world_size": 1, "rng": [{}], "history": history}
        (folder / "train_state.json").write_text(json.dumps(state))


def test_resume_of_a_finished_run_says_so_before_ray_starts(tmp_path, repo_root, monkeypatch):
    import ray

    params = write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "params.yaml")
    fam = load_params(params).families["handmle"]
    fam = fam.model_copy(update={"train": fam.train.model_copy(update={"epochs": 3})})
    storage = tmp_path / "runs"
    finished_run(storage, "handmle-20261202-090000-000", [1, 2, 3])
    with pytest.raises(CheckpointError, match=r"handmle-20261202-090000-000: the run already fin"):
        fit(get_family("handmle"), fam, str(tmp_path), storage_path=str(storage), resume=True)

    finished_run(storage, "handmle-20261202-100000-000", [1, 2], plateau_at=2)
    with pytest.raises(CheckpointError, match="plateaued after epoch 2"):
        fit(get_family("handmle"), fam, str(tmp_path), storage_path=str(storage), resume=True)
    assert not ray.is_initialized()

    # the CLI prints the message and exits 1, without a traceback
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSEOPS_ROOT", str(tmp_path))
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["families"]["handmle"]["train"].update(epochs=3, storage_path=str(storage))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    shown = CliRunner().invoke(app, ["train", "handmle", "--resume"])
    assert shown.exit_code == 1, shown.output
    assert "already finished" in shown.output and "Traceback" not in shown.output
    assert not ray.is_initialized()


def test_a_run_stopped_before_its_last_epoch_is_not_refused(tmp_path, repo_root):
    from poseops.train.fit import last_train_state, refuse_finished_run

    params = write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "params.yaml")
    fam = load_params(params).families["handmle"]
    fam = fam.model_copy(update={"train": fam.train.model_copy(update={"epochs": 3})})
    finished_run(tmp_path, "handmle-20261202-090000-000", [1, 2])
    assert last_train_state(str(tmp_path), "handmle-20261202-090000-000")["epoch"] == 2
    refuse_finished_run(str(tmp_path), "handmle-20261202-090000-000", fam)  # no error
    assert last_train_state(str(tmp_path), "handmle-20261202-000000-000") is None


def test_a_url_storage_path_reaches_ray_train_through_fsspec(tmp_path):
    import fsspec
    import pyarrow.fs

    from poseops.train.fit import ray_storage

    assert ray_storage(str(tmp_path)) == (str(tmp_path), None)
    path, wrapped = ray_storage("memory://poseops-runs/train")
    assert path == "/poseops-runs/train" and isinstance(wrapped, pyarrow.fs.PyFileSystem)
    with wrapped.open_output_stream(f"{path}/marker") as out:  # what Ray Train does with it
        out.write(b"written through fsspec")
    assert fsspec.filesystem("memory").cat_file(f"{path}/marker") == b"written through fsspec"


def saved_checkpoint(folder, epoch: int) -> None:
    """A whole checkpoint folder as the Train loop writes it (a small model; epoch `epoch`)."""
    import torch

    from poseops.train.state import TrainState, rng_state, save_train_state

    folder.mkdir(parents=True)
    model = torch.nn.Linear(64, 64)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 64)).sum().backward()
    optim.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [1], 0.5)
    state = TrainState(epoch, 0, 1, [rng_state()], [{"epoch": e} for e in range(epoch)])
    save_train_state(folder, model.state_dict(), {"family": "handmle"}, optim, sched, state)


@pytest.mark.parametrize("cut", ["weights.safetensors", "optimizer.pt", "train_state.json", None])
def test_resume_falls_back_to_the_newest_whole_checkpoint_on_storage(tmp_path, cut):
    """A driver killed while a checkpoint was being copied leaves part of it: resume skips it."""
    from poseops.train.loop import checkpoint_folder
    from poseops.train.state import load_train_state, newest_complete_checkpoint

    run = tmp_path / "handmle-20261202-090000-000"
    assert newest_complete_checkpoint(str(tmp_path), run.name) is None
    for epoch in (1, 2):
        saved_checkpoint(run / f"checkpoint_2026-12-02_09-00-0{epoch}.000000", epoch)
    newest = run / "checkpoint_2026-12-02_09-00-02.000000"
    if cut == "train_state.json":
        (newest / cut).unlink()
    elif cut is not None:
        whole = (newest / cut).read_bytes()
        (newest / cut).write_bytes(whole[: len(whole) - 100])
    found = newest_complete_checkpoint(str(tmp_path), run.name)
    assert found.endswith(f"checkpoint_2026-12-02_09-00-0{1 if cut else 2}.000000")

    import torch

    model = torch.nn.Linear(64, 64)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [1], 0.5)
    with checkpoint_folder(found) as folder:
        assert load_train_state(folder, model, optim, sched).epoch == (1 if cut else 2)
    assert not folder.exists()  # the copy is gone afterwards


def test_resume_reads_a_checkpoint_through_fsspec(tmp_path):
    import fsspec

    from poseops.train.loop import checkpoint_folder
    from poseops.train.state import newest_complete_checkpoint

    saved_checkpoint(tmp_path / "run-a" / "checkpoint_1", 1)
    memory = fsspec.filesystem("memory")
    memory.put(str(tmp_path / "run-a"), "/runs-for-resume/run-a", recursive=True)
    found = newest_complete_checkpoint("memory://runs-for-resume", "run-a")
    assert found == "memory:///runs-for-resume/run-a/checkpoint_1"
    with checkpoint_folder(found) as folder:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            p.name for p in (tmp_path / "run-a" / "checkpoint_1").iterdir()
        )


def test_a_restarted_worker_group_takes_a_newer_checkpoint_ray_had_not_registered(tmp_path):
    """A worker killed between a checkpoint's upload and its registration: Ray Train restores the one
    before (or none); the loop takes the newest whole one in the run's folder instead."""
    from poseops.train.loop import checkpoint_to_restore

    registered = object()  # stands for the ray.train.Checkpoint Ray Train restored
    cfg = {"storage_path": str(tmp_path), "run_name": "run-a"}
    assert checkpoint_to_restore(None, cfg, 1) is None  # a fresh run
    assert checkpoint_to_restore(registered, cfg, 1) is registered
    assert (
        checkpoint_to_restore(registered, {"storage_path": None, "run_name": None}, 1) is registered
    )
    saved_checkpoint(tmp_path / "run-a" / "checkpoint_1", 1)
    saved_checkpoint(tmp_path / "run-a" / "checkpoint_2", 2)
    for found in (checkpoint_to_restore(None, cfg, 1), checkpoint_to_restore(registered, cfg, 1)):
        assert found.endswith("run-a/checkpoint_2")
    saved_checkpoint(tmp_path / "run-b" / "checkpoint_1", 3)  # another run's: never taken
    assert checkpoint_to_restore(None, cfg, 1).endswith("run-a/checkpoint_2")


@pytest.mark.parametrize("name", ["handmle", "vmhpe", "hrnet_am", "lifter"])
def test_checkpoints_are_kept_by_the_validation_metric(name, tmp_path, repo_root, monkeypatch):
    """The run's best checkpoint is the one with the best validation score (the test split is for
    metrics.json, reports and gates only)."""
    import ray.train.torch

    import poseops.train.fit as fit_module

    handed = {}

    class Trainer:
        def __init__(self, loop, **settings):
            handed.update(settings)

        def fit(self):
            return "result"

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    monkeypatch.setattr(fit_module, "attach_ray", lambda **_: None)
    params = write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "params.yaml")
    family = get_family(name)
    assert fit(family, load_params(params).families[name], "data/x", storage_path=str(tmp_path))
    kept = handed["run_config"].checkpoint_config
    assert family.val_metric.startswith("val_")
    assert (kept.checkpoint_score_attribute, kept.checkpoint_score_order) == (
        family.val_metric,
        family.metric_mode,
    )
    assert handed["train_loop_config"]["val_metric"] == family.val_metric


@pytest.mark.parametrize(
    "task, reader, data",
    [
        ("topdown_crop", "load_split_arrays", {"crop_margin": 1.25}),
        ("bottomup_image", "load_evaluation_split", {}),
        ("lifting_sequence", "load_tracks", {}),
    ],
)
def test_the_train_loop_validates_on_the_validation_split(task, reader, data, monkeypatch):
    """Each epoch's score (checkpoint choice, plateau stop) reads split "val", never "test"."""
    import importlib

    from poseops.tasks import get_task

    class SplitRead(Exception):
        pass

    def spy(url, split, *args, **kwargs):
        raise SplitRead(split)

    monkeypatch.setattr(importlib.import_module(f"poseops.tasks.{task}"), reader, spy)
    cfg = {"dataset_url": "data/derived/x", "input_size": 64, "data": data}
    with pytest.raises(SplitRead) as read:
        get_task(task).load_validation(cfg)
    assert read.value.args == ("val",)
