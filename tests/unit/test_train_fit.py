"""The driver side of training without Ray: run names, the run `--resume` picks, storage precedence,
the plain config handed to workers, and `poseops train --resume` with nothing to resume."""

from __future__ import annotations

import pytest
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
    # driver-side settings stay with the driver; step settings reach the workers
    assert not {"storage_path", "max_failures", "num_workers", "placement_strategy"} & set(cfg)
    assert {"bf16", "accumulate", "compile", "use_gpu"} <= set(cfg)


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
