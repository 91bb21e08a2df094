"""The `poseops` command line: user errors are one clear line and exit 1; `data show` draws a grid."""

from __future__ import annotations

import cv2
from typer.testing import CliRunner

from poseops.cli.main import app
from poseops.storage import read_json, sha256_file

runner = CliRunner()


def _synth(out, *options: str):
    done = runner.invoke(app, ["data", "synth", "--out", str(out), *options])
    assert done.exit_code == 0, done.output
    return done


def _file_hashes(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_data_synth_writes_a_capture_root_then_show_draws_each_part(tmp_path):
    out = tmp_path / "caps"
    done = _synth(
        out,
        "--seed",
        "3",
        "--hands",
        "2",
        "--frames",
        "2",
        "--bodies",
        "1",
        "--body-frames",
        "2",
        "--views",
        "2",
        "--size",
        "64",
    )
    hands, bodies = (
        read_json(out / "hands" / "manifest.json"),
        read_json(out / "bodies" / "manifest.json"),
    )
    assert (
        hands["generator"]["name"] == "poseops.synthetic_hands"
        and hands["counts"]["sequences"] == 2
    )
    assert (
        bodies["generator"]["name"] == "poseops.synthetic_bodies"
        and bodies["counts"]["images"] == 1 * 2 * 2
    )
    assert "bodies" in done.output and "hands" in done.output  # the summary table names both parts

    shapes = {}
    for name, extra in (
        ("root", []),
        ("hands", ["--part", "hands"]),
        ("bodies", ["--part", "bodies"]),
    ):
        grid = tmp_path / f"{name}.png"
        shown = runner.invoke(
            app, ["data", "show", str(out), "--out", str(grid), "--count", "2", *extra]
        )
        assert shown.exit_code == 0, shown.output
        shapes[name] = cv2.imread(str(grid)).shape
    assert shapes["hands"][1] == shapes["bodies"][1] == 2 * 192
    assert (
        shapes["root"][0] > shapes["hands"][0] + shapes["bodies"][0]
    )  # both parts stacked under titles


def test_data_synth_hands_only_leaves_no_bodies(tmp_path):
    _synth(tmp_path, "--hands", "2", "--frames", "1")
    assert (tmp_path / "hands" / "manifest.json").exists() and not (tmp_path / "bodies").exists()
    refused = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--hands", "0"])
    assert refused.exit_code == 1 and "nothing to render" in refused.output
    refused = runner.invoke(
        app, ["data", "synth", "--out", str(tmp_path / "x"), "--bodies", "1", "--views", "6"]
    )
    assert (
        refused.exit_code == 1 and "views" in refused.output and "Traceback" not in refused.output
    )


def test_data_synth_bodies_same_seed_same_bytes(tmp_path):
    small = ["--hands", "0", "--bodies", "2", "--body-frames", "3", "--views", "2", "--size", "128"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        _synth(tmp_path / name, "--seed", seed, *small)
    a, b, c = (_file_hashes(tmp_path / name / "bodies") for name in "abc")
    assert (
        len(a) > 5
        and any(name.endswith(".tar") for name in a)
        and any(name.endswith(".mp4") for name in a)
    )
    assert a == b
    assert a.keys() == c.keys() and a["labels.jsonl"] != c["labels.jsonl"]  # the seed matters


def test_user_errors_exit_1_without_a_traceback(tmp_path):
    shown = runner.invoke(
        app, ["data", "show", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.png")]
    )
    assert shown.exit_code == 1
    assert "neither a derived dataset" in shown.output and "Traceback" not in shown.output
    bad = tmp_path / "params.yaml"
    bad.write_text("families: {handmle: {model: {}, data: {}, trian: {}}}\n")
    checked = runner.invoke(app, ["config", "validate", "--params", str(bad)])
    assert checked.exit_code == 1 and "trian" in checked.output
