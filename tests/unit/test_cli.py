"""The `poseops` command line: user errors are one clear line and exit 1; `data show` draws a grid."""

from __future__ import annotations

import cv2
from typer.testing import CliRunner

from poseops.cli.main import app

runner = CliRunner()


def test_data_synth_then_show_draws_a_grid(tmp_path):
    out = tmp_path / "caps"
    done = runner.invoke(app, ["data", "synth", "--out", str(out), "--seed", "3", "--sequences", "2", "--frames", "2"])
    assert done.exit_code == 0, done.output
    grid = tmp_path / "grid.png"
    shown = runner.invoke(app, ["data", "show", str(out), "--out", str(grid), "--count", "2"])
    assert shown.exit_code == 0, shown.output
    image = cv2.imread(str(grid))
    assert image is not None and image.shape[1] >= 2 * 150


def test_user_errors_exit_1_without_a_traceback(tmp_path):
    shown = runner.invoke(app, ["data", "show", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.png")])
    assert shown.exit_code == 1
    assert "neither a derived dataset" in shown.output and "Traceback" not in shown.output
    bad = tmp_path / "params.yaml"
    bad.write_text("families: {handmle: {model: {}, data: {kind: hand_crop}, trian: {}}}\n")
    checked = runner.invoke(app, ["config", "validate", "--params", str(bad)])
    assert checked.exit_code == 1 and "trian" in checked.output
