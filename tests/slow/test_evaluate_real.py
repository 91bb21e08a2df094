"""The evaluate workload on real data, and DVC's views of the smoke project's metrics and plots."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import BIN, project_env

pytestmark = pytest.mark.slow


def test_smoke_checkpoint_evaluates_on_the_real_freihand_fixture(
    smoke_project, real_fixtures, tmp_path
):
    from poseops.annotations.internal import build_annotations
    from poseops.checkpoints import build_model_from_checkpoint
    from poseops.config import AnnotationSource, SplitParams
    from poseops.datasets.shards import derive_dataset
    from poseops.evaluate import evaluate_model
    from poseops.families import get_family, load_params
    from poseops.tasks import get_task

    fam = load_params(smoke_project / "params.yaml").families["handmle"]
    source = AnnotationSource(
        format="coco", file=str(real_fixtures / "freihand" / "test_freihand.json")
    )
    labels = tmp_path / "labels.json"
    build_annotations(None, [source], labels)
    card = derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        str(tmp_path / "freihand"),
        fam.data,
        SplitParams(test_fraction=0.34, val_fraction=0.33),
    )
    assert card["source"]["kind"] == "real" and card["counts"]["test"] >= 1

    model = build_model_from_checkpoint(smoke_project / "models" / "handmle")
    report = evaluate_model(
        get_family("handmle"), fam, model, str(tmp_path / "freihand"), tmp_path / "out"
    )
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["data"] == "real"
    assert written["num_samples"] == card["counts"]["test"]
    assert 0.0 <= written["pck"] <= 1.0 and written["protocol"]["pck"]["threshold"] == 0.2
    assert len(written["dataset_checksum"]) == 64
    assert report["pck"] == written["pck"]


def test_dvc_shows_the_metrics_and_plots(smoke_project):
    shown = subprocess.run(
        [str(BIN / "dvc"), "metrics", "show", "--json"],
        cwd=smoke_project,
        capture_output=True,
        text=True,
        env=project_env(None),
    )
    assert shown.returncode == 0, shown.stderr
    assert '"pck"' in shown.stdout and "metrics/handmle/metrics.json" in shown.stdout
    plots = subprocess.run(
        [str(BIN / "dvc"), "plots", "show", "-o", "dvc_plots"],
        cwd=smoke_project,
        capture_output=True,
        text=True,
        env=project_env(None),
    )
    assert plots.returncode == 0, plots.stderr
    index = (smoke_project / "dvc_plots" / "index.html").read_text()
    assert "pck_curve" in index and "train_history" in index


def test_dvc_metrics_diff_compares_two_commits(smoke_project, tmp_path):
    """metrics.json is what `dvc metrics diff` (and so `dvc exp show`) compares across experiments."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "metrics" / "handmle").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "dvc.lock"):
        shutil.copy(smoke_project / name, repo / name)
    metrics = repo / "metrics" / "handmle" / "metrics.json"
    shutil.copy(smoke_project / "metrics" / "handmle" / "metrics.json", metrics)
    env = project_env(None)

    def run(*args):
        done = subprocess.run(args, cwd=repo, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("git", "init", "-q")
    run(
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "empty",
    )
    run(str(BIN / "dvc"), "init", "-q")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "baseline")
    report = json.loads(metrics.read_text())
    report["pck"] = round(report["pck"] + 0.1, 4)
    metrics.write_text(json.dumps(report))
    diff = json.loads(run(str(BIN / "dvc"), "metrics", "diff", "--json"))
    change = diff["metrics/handmle/metrics.json"]["pck"]
    assert abs(change["diff"] - 0.1) < 1e-3, change


def test_hrnet_am_evaluates_on_the_real_coco_fixture(real_fixtures, tmp_path):
    """Real COCO val2017 people (4 images, people with no labelled keypoint dropped) through derive and
    evaluate with an hrnet_am checkpoint at the smoke profile's settings (random weights saved and loaded
    back: the data path is what is checked): PCK@0.1 of the person box and COCO AP with ground-truth
    boxes, `real` data."""
    import torch

    from poseops.annotations.internal import build_annotations
    from poseops.checkpoints import build_model_from_checkpoint, save_checkpoint
    from poseops.config import AnnotationSource, SplitParams
    from poseops.datasets.shards import derive_dataset
    from poseops.evaluate import evaluate_model
    from poseops.families import get_family, load_params
    from poseops.models import build_from_config
    from poseops.profiles import write_profile
    from poseops.tasks import get_task

    fam = load_params(write_profile("smoke", tmp_path / "params.yaml")).families["hrnet_am"]
    source = AnnotationSource(format="coco", file=str(real_fixtures / "coco" / "test_coco.json"))
    labels = tmp_path / "labels.json"
    build_annotations(None, [source], labels)
    card = derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        str(tmp_path / "coco"),
        fam.data,
        SplitParams(val_fraction=0.5),
        skeleton="coco17",
    )
    assert card["source"]["kind"] == "real" and card["counts"]["test"] >= 1

    torch.manual_seed(0)
    built = build_from_config("hrnet_am", fam.model)
    family = get_family("hrnet_am")
    save_checkpoint(tmp_path / "ckpt", "hrnet_am", family.model, built.state_dict(), built.config)
    model = build_model_from_checkpoint(tmp_path / "ckpt")  # evaluated as the pipeline's are
    report = evaluate_model(family, fam, model, str(tmp_path / "coco"), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["data"] == "real" and written["split"] == "test"
    assert written["num_samples"] == card["counts"]["test"]  # evaluate scores the test split
    assert written["protocol"]["pck"]["threshold"] == 0.1
    assert written["protocol"]["pck"]["normaliser"] == "bbox"
    assert 0.0 <= written["pck"] <= 1.0 and 0.0 <= written["ap"] <= 1.0
    assert "ground-truth boxes" in written["protocol"]["ap"]["boxes"]
    assert report["pck"] == written["pck"]


def test_vmhpe_evaluates_on_the_real_coco_fixture(real_fixtures, tmp_path):
    """The bottom-up body family on real COCO val2017 images: import -> derive (whole images, every
    person) -> evaluate with a vmhpe checkpoint at the smoke profile's settings (random weights saved and
    loaded back: the data path is what is checked): COCO AP over the test split's images, `real` data."""
    import torch

    from poseops.annotations.internal import import_annotations
    from poseops.checkpoints import build_model_from_checkpoint, save_checkpoint
    from poseops.config import SplitParams
    from poseops.datasets.derive import derive_dataset
    from poseops.evaluate import evaluate_model
    from poseops.families import get_family, load_params
    from poseops.models import build_from_config
    from poseops.profiles import write_profile

    fam = load_params(write_profile("smoke", tmp_path / "params.yaml")).families["vmhpe"]
    family = get_family("vmhpe")
    manifest = import_annotations(
        "coco", real_fixtures / "coco" / "test_coco.json", None, tmp_path / "import"
    )
    card = derive_dataset(
        family.task_module.rows,
        tmp_path / "import" / manifest["annotations"]["file"],
        str(tmp_path / "coco"),
        fam.data,
        SplitParams(val_fraction=0.25, test_fraction=0.25),
        skeleton=family.skeleton,
        executor="local",
    )
    assert card["source"]["kind"] == "real" and card["counts"]["test"] >= 1

    torch.manual_seed(0)
    built = build_from_config(family.model, fam.model)
    save_checkpoint(tmp_path / "ckpt", "vmhpe", family.model, built.state_dict(), built.config)
    model = build_model_from_checkpoint(tmp_path / "ckpt")
    report = evaluate_model(family, fam, model, str(tmp_path / "coco"), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["data"] == "real" and written["split"] == "test"
    assert set(written["data_mix"]) == {"coco:test_coco.json"}
    assert 0.0 <= written["ap"] <= 1.0 and report["ap"] == written["ap"]
    assert len(written["dataset_checksum"]) == 64
