"""DVC and the per-family derived datasets: one labels file feeds a body and a hand derivation; after an
edit of one hand record `dvc repro` re-runs both derivations (both depend on the labels file), but the
body dataset comes out byte-identical, so the stage that depends on it is skipped while the hand
family's re-runs. A two-family stand-in for the pipeline's derive@<family> -> train@<family>."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.helpers_annotations import coco_bodies_file, labels_of, onehand10k_file

from conftest import BIN, REPO, project_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DERIVE = """import sys
from poseops.config import SplitParams
from poseops.datasets.derive import derive_dataset
from poseops.tasks import get_task
task = get_task(sys.argv[1])
derive_dataset(task.rows, "labels/labels.json", "derived/" + sys.argv[2], task.Options(),
               SplitParams(val_fraction=0.25, test_fraction=0.25), skeleton=sys.argv[3], executor="local")
"""
TRAIN = """import shutil, sys
shutil.copy(f"derived/{sys.argv[1]}/card.json", f"model_{sys.argv[1]}.json")
"""
STAGES = """stages:
  derive_body:
    cmd: python derive.py topdown_crop body coco17
    deps: [derive.py, labels/labels.json]
    outs: [derived/body]
  derive_hand:
    cmd: python derive.py topdown_crop hand hand21
    deps: [derive.py, labels/labels.json]
    outs: [derived/hand]
  train_body:
    cmd: python train.py body
    deps: [train.py, derived/body]
    outs: [model_body.json]
  train_hand:
    cmd: python train.py hand
    deps: [train.py, derived/hand]
    outs: [model_hand.json]
"""


def ran(output: str) -> set[str]:
    return {
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    }


def test_a_hand_edit_reruns_the_hand_training_only(tmp_path):
    root = tmp_path / "project"
    bodies = coco_bodies_file(root / "src" / "bodies")
    hands, _ = onehand10k_file(root / "src" / "hands", count=4)
    labels = labels_of(root / "labels" / "labels.json", {"bodies": bodies, "hands": hands})
    (root / "derive.py").write_text(DERIVE)
    (root / "train.py").write_text(TRAIN)
    (root / "dvc.yaml").write_text(STAGES)
    env = {**project_env(None), "PYTHONPATH": str(REPO / "platform"), "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("git", "init", "-q")
    run(str(BIN / "dvc"), "init", "-q")
    assert ran(run(str(BIN / "dvc"), "repro")) == {
        "derive_body",
        "derive_hand",
        "train_body",
        "train_hand",
    }
    body_card = (root / "derived" / "body" / "card.json").read_bytes()
    data = json.loads(labels.read_text())
    hand = next(a for a in data["annotations"] if len(a["keypoints"]) == 63)
    hand["keypoints"][0] += 5.0
    labels.write_text(json.dumps(data))
    second = run(str(BIN / "dvc"), "repro")
    print("re-ran after a hand edit:", sorted(ran(second)))
    assert ran(second) == {"derive_body", "derive_hand", "train_hand"}
    assert "Stage 'train_body' didn't change" in second
    assert (root / "derived" / "body" / "card.json").read_bytes() == body_card
