"""An extra annotation source in params.yaml re-runs `annotate` and what follows, never `capture`.

A temporary copy of the project (dvc.yaml, params.yaml with a tiny capture, stages/, the package
folders the stages depend on). The first capture and annotate run in this process and the later
stages' outputs are placeholders, all recorded with `dvc commit` (so the test stays fast); then
DVC's own bookkeeping says which stages the new source makes stale, and `dvc repro annotate`
re-runs annotate for real, through its stage script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from poseops.annotations.internal import build_annotations
from poseops.annotations.sequences import write_sequence_annotations
from poseops.capture import write_captures
from poseops.config import CaptureParams

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def dvc(project: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "POSEOPS_ROOT": str(project),
    }
    done = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def placeholder_outputs(project: Path, families: list[str]) -> list[str]:
    """Create every per-family stage output, and those of the stages beside the data flow (assess), as a
    small file or folder; return those stages' names."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    names = []
    for name, stage in stages.items():
        if "foreach" in stage:
            items = [(f"{name}@{family}", stage["do"], family) for family in stage["foreach"]]
        elif name not in ("capture", "annotate"):
            items = [(name, stage, "")]
        else:
            continue
        for stage_name, body, family in items:
            names.append(stage_name)
            for kind in ("outs", "metrics", "plots"):
                for entry in body.get(kind, []):
                    path = project / (
                        entry if isinstance(entry, str) else next(iter(entry))
                    ).replace("${key}", family)
                    target = path if path.suffix else path / "placeholder.txt"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(f"placeholder for {stage_name}\n")
    return names


def test_adding_the_real_coco_fixture_reruns_annotate_and_later_stages_not_capture(
    real_fixtures, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    shutil.copytree(
        REPO / "stages", project / "stages", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        REPO / "platform" / "poseops",
        project / "platform" / "poseops",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["capture"]["hands"].update(sequences=2, frames_per_sequence=2, image_size=64)
    params["data"]["annotations"] = []
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(project, "init", "--no-scm", "-q")

    raw = project / "data" / "raw" / "synthetic"
    write_captures(
        raw,
        CaptureParams.model_validate(
            {**params["data"]["capture"], "bodies": None, "sequences": None}
        ),
        keep_empty=True,
    )
    assert not any(
        (raw / "bodies").iterdir()
    )  # a null part: an empty folder, still an output for DVC
    labels = project / "data" / "annotations" / "labels.json"
    build_annotations(raw, [], labels)
    write_sequence_annotations(raw / "sequences", labels.parent / "sequences.json")
    assert len(json.loads(labels.read_text())["images"]) == 4
    later = placeholder_outputs(project, list(params["families"]))
    dvc(project, "commit", "-f", "-q", "capture", "annotate", *later)
    assert json.loads(dvc(project, "status", "--json") or "{}") == {}

    coco = real_fixtures / "coco" / "test_coco.json"
    params["data"]["annotations"] = [{"format": "coco", "file": str(coco)}]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = json.loads(dvc(project, "status", "--json"))
    assert set(stale) == {"annotate"} and "data.annotations" in json.dumps(stale["annotate"])
    dry = dvc(project, "repro", "--dry")
    assert "Running stage 'annotate'" in dry and "Running stage 'capture'" not in dry

    second = dvc(project, "repro", "annotate")
    assert "Running stage 'annotate'" in second and "Running stage 'capture'" not in second
    merged = json.loads(labels.read_text())
    source = json.loads(coco.read_text())
    assert len(merged["images"]) == 4 + len(source["images"])
    assert sum(1 for a in merged["annotations"] if len(a["keypoints"]) == 51) == len(
        source["annotations"]
    )
    stale = json.loads(dvc(project, "status", "--json"))
    assert "capture" not in stale and "annotate" not in stale
    image_families = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["derive"]
    assert {f"derive@{family}" for family in image_families["foreach"]} <= set(
        stale
    )  # what follows is stale
    assert "derive-lifter" not in stale  # it reads the sequences, which the source leaves alone
