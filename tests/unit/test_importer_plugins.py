"""A user's importer arrives as a plug-in (entry point group `poseops.importers`): it is listed by
`poseops data import --help` and imports through the same checks and repairs as the built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from poseops.annotations.internal import PLUGIN_GROUP, import_formats, load_annotations
from poseops.cli.main import app

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "plugins"
runner = CliRunner()


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch) -> Path:
    """The tests/plugins package installed as a distribution: a dist-info (METADATA + entry_points.txt)
    on sys.path, as `pip install` would leave it; returns the folder to put on PYTHONPATH."""
    site = tmp_path / "site"
    dist = site / "poseops_jsonl_importer-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: poseops-jsonl-importer\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{PLUGIN_GROUP}]\njsonl = poseops_jsonl_importer:read_jsonl\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGIN_SOURCE))
    return site


def test_plugin_format_imports_through_the_cli_with_repairs(installed_plugin, tmp_path):
    assert import_formats()["jsonl"] == "poseops_jsonl_importer:read_jsonl"
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((120, 160, 3), np.uint8))
    rows = [
        {
            "image": "a.png",
            "width": 160,
            "height": 120,
            "points": [[10, 20, 2], [40, 22, 2], [25, 50, 1]],
        },
        {
            "image": "a.png",
            "width": 160,
            "height": 120,
            "points": [[90, 20, 2], [120, 25, 7], [100, 60, 2]],
        },
    ]
    source = tmp_path / "markers.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows))
    done = runner.invoke(
        app,
        ["data", "import", "jsonl", str(source), "--out", str(tmp_path / "out")],
        env={"COLUMNS": "4000"},
    )
    assert done.exit_code == 0, done.output
    assert (
        "2 annotations: area from keypoint extent; 2 annotations: bbox from keypoint extent"
        in done.output
    )
    assert "1 annotation: visibilities outside {0, 1, 2} clipped" in done.output
    form = load_annotations(tmp_path / "out")
    assert form["annotations"][0]["bbox"] == [10.0, 20.0, 30.0, 30.0]
    assert form["annotations"][1]["keypoints"][5] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["format"] == "jsonl"


def test_plugin_is_listed_in_the_import_help(installed_plugin):
    env = {
        **os.environ,
        "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join(
            [
                str(installed_plugin),
                str(PLUGIN_SOURCE),
                str(Path(__file__).resolve().parents[2] / "platform"),
            ]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "poseops.cli.main", "data", "import", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "coco, mpii, posetrack, interhand, h36m, freihand, panoptic, jsonl" in " ".join(
        done.stdout.split()
    )


def test_unknown_format_names_the_plugins_too(installed_plugin, tmp_path):
    done = runner.invoke(
        app,
        ["data", "import", "nope", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")],
        env={"COLUMNS": "4000"},
    )
    assert (
        done.exit_code == 1 and "'nope' is not supported" in done.output and "jsonl" in done.output
    )


def test_the_readme_example_is_a_working_importer(tmp_path, monkeypatch):
    """The README's "Importer plug-ins" example, as written there, installed under an entry point."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```python\n# my_importer.py")
    code = readme[start + len("```python\n") : readme.index("```", start + 10)]
    site = tmp_path / "site"
    dist = site / "my_importer-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "my_importer.py").write_text(code)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-importer\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\nmarkers = my_importer:read_jsonl\n")
    monkeypatch.syspath_prepend(str(site))
    assert import_formats()["markers"] == "my_importer:read_jsonl"
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((120, 160, 3), np.uint8))
    row = {
        "image": "a.png",
        "width": 160,
        "height": 120,
        "points": [[10, 20, 2], [40, 22, 2], [25, 50, 1]],
    }
    (tmp_path / "m.jsonl").write_text(json.dumps(row))
    done = runner.invoke(
        app,
        ["data", "import", "markers", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "out")],
        env={"COLUMNS": "4000"},
    )
    assert done.exit_code == 0, done.output
    (ann,) = load_annotations(tmp_path / "out")["annotations"]
    assert ann["keypoints"] == [10, 20, 2, 40, 22, 2, 25, 50, 1] and ann["bbox"] == [
        10.0,
        20.0,
        30.0,
        30.0,
    ]
