"""Real data through `dvc repro` on the tiny profile: a COCO-format hand file added with `poseops data add`
(DVC-tracked under data/raw/<name>/) joins the hand family's training mix, metrics.json names the mix, an
edit of the source re-runs annotate and what follows but never capture, and the trained checkpoints score
real-only data (FreiHAND's COCO-format hands, COCO's people) with metrics.json saying `real`.

The stages start their own local Ray instances (no shared cluster: the project is small).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, make_project, project_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
REPRO_TIMEOUT = 1200  # s: the tiny pipeline from scratch on a loaded 2-core host
SOURCE = "freihand"


def run(root: Path, *args: str, timeout: float = 300) -> str:
    env = {**project_env(None), "PYTHONPATH": str(root / "platform"), "COLUMNS": "4000"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    """The stages `dvc repro` ran (not those it found unchanged or restored from its run-cache)."""
    return {
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    }


@pytest.fixture(scope="module")
def real_project(tmp_path_factory, real_fixtures) -> tuple[Path, str]:
    """The tiny project with the FreiHAND fixture added as source `freihand`, reproduced once."""
    root = make_project(tmp_path_factory.mktemp("real") / "project", profile="tiny")
    # tiny caps each split at 64 samples, each source keeping its share: the 8 added hands would lose
    # a few to the cap beside the synthetic hands (72 training samples), and the counts below are all 8
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["families"]["handmle"]["data"]["max_samples"] = 128
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    freihand = real_fixtures / "freihand"
    added = run(
        root,
        str(BIN / "python"),
        "-m",
        "poseops.cli.main",
        "data",
        "add",
        SOURCE,
        "coco",
        str(freihand / "test_freihand.json"),
        "--images",
        str(freihand),
    )
    assert "tracked by DVC" in added
    first = run(root, str(BIN / "dvc"), "repro", timeout=REPRO_TIMEOUT)
    return root, first


def test_the_added_source_joins_the_mix_and_metrics_json_names_it(real_project):
    root, first = real_project
    assert {"capture", "annotate", "derive@handmle", "train@handmle", "evaluate@handmle"} <= ran(
        first
    )
    assert f"annotate: {SOURCE} / hand: 8 instances; handmle 8" in first  # none dropped silently
    card = json.loads((root / "data" / "derived" / "handmle" / "card.json").read_text())
    mix = card["source"]["mix"]
    assert card["source"]["kind"] == "mixed"
    assert sum(mix[split].get(SOURCE, 0) for split in mix) == 8
    metrics = json.loads((root / "metrics" / "handmle" / "metrics.json").read_text())
    assert metrics["data"] == "mixed" and metrics["data_mix"] == mix["train"]
    assert set(metrics["data_mix"]) == {"synthetic", SOURCE}


def test_real_only_data_scores_with_the_trained_checkpoints(real_project, real_fixtures, tmp_path):
    """import -> derive -> evaluate with the pipeline's checkpoints: the hand family on FreiHAND's
    COCO-format file, the body family on COCO's people."""
    from poseops.annotations.internal import import_annotations
    from poseops.checkpoints import build_model_from_checkpoint
    from poseops.datasets.derive import derive_dataset
    from poseops.evaluate import evaluate_model
    from poseops.families import get_family, load_params

    root, _ = real_project
    params = load_params(root / "params.yaml")
    cases = {
        "handmle": ("coco", real_fixtures / "freihand" / "test_freihand.json"),
        "vmhpe": ("coco", real_fixtures / "coco" / "test_coco.json"),
    }
    for name, (fmt, file) in cases.items():
        imported = tmp_path / name / "import"
        manifest = import_annotations(fmt, file, None, imported)
        family, fam = get_family(name), params.families[name]
        dataset = str(tmp_path / name / "dataset")
        card = derive_dataset(
            family.task_module.rows,
            imported / manifest["annotations"]["file"],
            dataset,
            fam.data,
            params.data.split,
            skeleton=family.skeleton,
            executor="local",
        )
        assert card["source"]["kind"] == "real" and card["counts"]["test"] >= 1, card["counts"]
        model = build_model_from_checkpoint(root / "models" / name)
        report = evaluate_model(family, fam, model, dataset, tmp_path / name / "metrics")
        written = json.loads((tmp_path / name / "metrics" / "metrics.json").read_text())
        assert written["data"] == "real" and report["data"] == "real"
        assert set(written["data_mix"]) <= {f"coco:{file.name}"}
        assert len(written["dataset_checksum"]) == 64
        primary = "pck" if name == "handmle" else "ap"
        assert 0.0 <= written[primary] <= 1.0, written


def test_an_edit_of_the_source_reruns_annotate_and_what_follows_never_capture(real_project):
    root, _ = real_project
    labels = root / "data" / "raw" / SOURCE / "test_freihand.json"
    data = json.loads(labels.read_text())
    dropped = data["annotations"].pop()
    labels.write_text(json.dumps(data))
    run(root, str(BIN / "dvc"), "add", f"data/raw/{SOURCE}")  # the source's new version, recorded
    status = json.loads(run(root, str(BIN / "dvc"), "status", "--json") or "{}")
    assert "annotate" in status and "capture" not in status
    second = run(root, str(BIN / "dvc"), "repro", timeout=REPRO_TIMEOUT)
    reran = ran(second)
    print("re-ran after the source edit:", sorted(reran))
    assert "capture" not in reran
    assert {"annotate", "derive@handmle", "train@handmle", "evaluate@handmle"} <= reran
    assert f"{SOURCE} / hand: 7 instances; handmle 7" in second
    metrics = json.loads((root / "metrics" / "handmle" / "metrics.json").read_text())
    card = json.loads((root / "data" / "derived" / "handmle" / "card.json").read_text())
    assert sum(card["source"]["mix"][s].get(SOURCE, 0) for s in card["source"]["mix"]) == 7
    assert metrics["data_mix"] == card["source"]["mix"]["train"]
    assert dropped["id"] not in {a["id"] for a in json.loads(labels.read_text())["annotations"]}
    # and with nothing changed, nothing runs
    assert ran(run(root, str(BIN / "dvc"), "repro", timeout=REPRO_TIMEOUT)) == set()
    assert os.path.exists(root / "data" / "raw" / f"{SOURCE}.dvc")
