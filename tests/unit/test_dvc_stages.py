"""dvc.yaml's per-family stages are rendered from params.yaml's families (DVC's own parser, no execution)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).parent / "dvc")


def stage_names(project: Path) -> set[str]:
    out = subprocess.run(
        [DVC, "stage", "list", "--name-only"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_each_family_of_params_gets_its_stages_once_rendered(tmp_path):
    from poseops.dvc_yaml import render_file
    from poseops.families import load_params

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    before = stage_names(tmp_path)
    assert {
        "capture",
        "annotate",
        "derive@handmle",
        "train@handmle",
        "evaluate@handmle",
        "promote@handmle",
        "report@handmle",
    } <= before

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["families"]["vmhpe"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text(render_file(REPO, load_params(tmp_path / "params.yaml")))
    after = stage_names(tmp_path)
    assert before - after == {
        "derive@vmhpe",
        "train@vmhpe",
        "evaluate@vmhpe",
        "promote@vmhpe",
        "report@vmhpe",
    }
    assert after <= before


def test_per_family_stages_depend_on_their_own_blocks_only():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("derive", "train", "evaluate", "promote"):
        params = pipeline[stage]["do"].get("params", [])
        for entry in params:
            name = entry if isinstance(entry, str) else next(iter(entry))
            assert name.startswith("families.${key}.") or name.startswith("data."), (stage, name)
