"""dvc.yaml's stages come from params.yaml's `families` mapping (DVC's own parser, no execution)."""

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
        [DVC, "stage", "list", "--name-only"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_a_dummy_family_gets_its_four_stages_with_dvc_yaml_unchanged(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    before = stage_names(tmp_path)
    assert {"capture", "annotate", "derive@handmle", "train@handmle", "evaluate@handmle", "promote@handmle"} <= before

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["families"]["dummy"] = params["families"]["handmle"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    after = stage_names(tmp_path)
    assert after - before == {"derive@dummy", "train@dummy", "evaluate@dummy", "promote@dummy"}
    assert (tmp_path / "dvc.yaml").read_bytes() == (REPO / "dvc.yaml").read_bytes()


def test_per_family_stages_depend_on_their_own_blocks_only():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("derive", "train", "evaluate", "promote"):
        params = pipeline[stage]["do"].get("params", [])
        for entry in params:
            name = entry if isinstance(entry, str) else next(iter(entry))
            assert name.startswith("families.${key}.") or name.startswith("data."), (stage, name)
