"""`poseops data add`: a user's source becomes a DVC-tracked raw input under data/raw/<name>/ that the
annotate stage depends on, and an entry of params.yaml's data.annotations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.helpers_annotations import dvc, onehand10k_file
from typer.testing import CliRunner

from poseops.annotations.internal import build_annotations
from poseops.cli.main import app
from poseops.config import AnnotationSource

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def project(tmp_path) -> Path:
    """A git + DVC repository with the project's params.yaml and its annotate stage."""
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    (root / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    (root / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"annotate": stages["annotate"]}}, sort_keys=False)
    )
    return root


def test_added_source_is_tracked_and_feeds_annotate(project, tmp_path):
    labels, _ = onehand10k_file(tmp_path / "mine", count=3)
    done = runner.invoke(
        app,
        [
            "data",
            "add",
            "myhands",
            "coco",
            str(labels),
            "--images",
            str(tmp_path / "mine"),
            "--params",
            str(project / "params.yaml"),
        ],
        env={"COLUMNS": "4000"},
    )
    assert done.exit_code == 0, done.output
    folder = project / "data" / "raw" / "myhands"
    assert (folder / "onehand10k.json").is_file() and len(
        list((folder / "images").glob("*.jpg"))
    ) == 3
    tracked = yaml.safe_load((project / "data" / "raw" / "myhands.dvc").read_text())
    assert tracked["outs"][0]["path"] == "myhands"
    assert (
        tracked["outs"][0]["nfiles"] == 5
    )  # the labels, and images/ (3 frames and the labels beside them)
    params_text = (project / "params.yaml").read_text()
    assert params_text.startswith("# Resolved from profiles/")  # the header survives
    entry = yaml.safe_load(params_text)["data"]["annotations"][-1]
    assert entry == {
        "format": "coco",
        "file": "data/raw/myhands/onehand10k.json",
        "name": "myhands",
        "images": "data/raw/myhands/images",
    }
    assert '"data/raw/myhands.dvc" -> "annotate"' in dvc(project, "dag", "--dot")
    source = AnnotationSource(
        **{**entry, "file": str(project / entry["file"]), "images": str(project / entry["images"])}
    )
    summary = build_annotations(
        None, [source], tmp_path / "labels.json", families={"handmle": "hand21"}
    )
    assert summary["annotations"] == 3 and "handmle 3" in summary["coverage"][0]
    # an edit of the tracked source is a change DVC sees (annotate would re-run)
    data = json.loads((folder / "onehand10k.json").read_text())
    data["annotations"].pop()
    (folder / "onehand10k.json").write_text(json.dumps(data))
    assert "myhands" in dvc(project, "status", "data/raw/myhands.dvc")


def test_a_source_that_would_not_import_is_not_added(tmp_path):
    project = tmp_path / "project"  # refused before DVC is asked anything: no repository needed
    project.mkdir()
    (project / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    labels, _ = onehand10k_file(tmp_path / "mine", count=1)
    data = json.loads(labels.read_text())
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]
    labels.write_text(json.dumps(data))
    before = (project / "params.yaml").read_text()
    done = runner.invoke(
        app,
        [
            "data",
            "add",
            "bad",
            "coco",
            str(labels),
            "--no-dvc",
            "--params",
            str(project / "params.yaml"),
        ],
        env={"COLUMNS": "4000"},
    )
    assert (
        done.exit_code == 1
        and "onehand10k.json" in done.output
        and "annotation id 1" in done.output
    )
    assert not (project / "data" / "raw" / "bad").exists()
    assert (project / "params.yaml").read_text() == before


def test_config_use_keeps_the_sources_data_add_put_in_params(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    params = project / "params.yaml"
    params.write_text((PROJECT / "params.yaml").read_text())
    labels, _ = onehand10k_file(tmp_path / "mine", count=1)
    args = ["data", "add", "myhands", "coco", str(labels), "--no-dvc", "--params", str(params)]
    assert runner.invoke(app, args, env={"COLUMNS": "4000"}).exit_code == 0
    raw = yaml.safe_load(params.read_text())
    added = raw["data"]["annotations"][-1]
    # a weight for the added source, and a source the user listed by hand outside data/raw/
    raw["data"]["weights"] = {"myhands": 0.5}
    raw["data"]["annotations"].append({"format": "coco", "file": str(labels)})
    params.write_text(yaml.safe_dump(raw, sort_keys=False))

    done = runner.invoke(
        app,
        ["config", "use", str(PROJECT / "profiles" / "tiny.yaml"), "--out", str(params)],
        env={"COLUMNS": "4000"},
    )
    assert done.exit_code == 0, done.output
    assert "kept source 'myhands'" in done.output
    written = yaml.safe_load(params.read_text())
    assert written["profile"] == "tiny"
    (kept,) = written["data"]["annotations"]  # the profile's own list has no source
    assert {k: v for k, v in kept.items() if k in added} == added
    assert written["data"]["weights"] == {"myhands": 0.5}
    # a second switch neither loses nor repeats it
    assert (
        runner.invoke(
            app, ["config", "use", str(PROJECT / "profiles" / "smoke.yaml"), "--out", str(params)]
        ).exit_code
        == 0
    )
    assert yaml.safe_load(params.read_text())["data"]["annotations"] == [kept]
