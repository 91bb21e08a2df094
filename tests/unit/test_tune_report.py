"""Grid tables (mean ± SD, gaps against 2 pooled SDs, the paper beside ours), `--apply`, and CLI errors."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poseops.cli.main import app
from poseops.errors import ConfigError
from poseops.tune import apply_to_params, best_grid_row, parse_sets
from poseops.tune.grids import load_grid
from poseops.tune.report import build_report, csv_text, markdown, write_report

REPO = Path(__file__).resolve().parents[2]
DATASET = {
    "name": "synthetic",
    "checksums": ["abc123"],
    "split": "validation split",
    "urls": ["data/derived/vmhpe"],
}


def rows_for(grid, values: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "row": row,
            "seed": seed,
            "value": v,
            "val_value": v,
            "epochs_run": 3,
            "dataset_url": "data/derived/vmhpe",
        }
        for row, vs in values.items()
        for seed, v in enumerate(vs)
    ]


def test_mean_sd_and_gaps_beside_the_paper(tmp_path):
    grid = load_grid("vmhpe", "t6_components")
    values = {"none": [0.50, 0.52, 0.51], "mfcm": [0.50, 0.53, 0.51], "mffm": [0.60, 0.61, 0.62]}
    report = build_report(grid, rows_for(grid, values), DATASET)
    by_row = {e["row"]: e for e in report["summary"]}
    assert by_row["none"]["mean"] == pytest.approx(0.51) and by_row["none"]["sd"] == pytest.approx(
        0.01
    )
    assert by_row["both"]["runs"] == 0 and report["missing_rows"] == ["both"]
    gaps = {(g["a"], g["b"]): g for g in report["gaps"]}
    assert gaps[("mffm", "none")]["difference"] == pytest.approx(0.10)
    assert gaps[("mffm", "none")]["exceeds_2sd"] is True
    assert gaps[("mfcm", "none")]["exceeds_2sd"] is False  # 0.0033 against a pooled SD of ~0.014
    assert gaps[("mffm", "none")]["paper"] == pytest.approx(93.8 - 92.1)
    assert gaps[("both", "none")]["difference"] is None
    text = markdown(report)
    assert "| none | 3 | 0.510 ± 0.010 | 51.0 ± 1.0 | 92.1 | 0.510 ± 0.010 |" in text
    assert "**synthetic**" in text and "`abc123`" in text and "Rows not run: both" in text
    # each gap says plainly whether it reproduces the paper's
    assert "| mffm − none | +0.1000 (+10.00) |" in text
    mffm_line = next(line for line in text.splitlines() if line.startswith("| mffm − none"))
    assert mffm_line.endswith("| reproduced (same sign, > 2 SD) |")
    mfcm_line = next(line for line in text.splitlines() if line.startswith("| mfcm − none"))
    assert mfcm_line.endswith("| not shown (same sign, within 2 SD) |")
    table = list(csv.DictReader(io.StringIO(csv_text(report))))
    assert [r["row"] for r in table] == ["none", "mfcm", "mffm", "both"] and table[0][
        "paper_value"
    ] == "92.1"
    written = write_report(report, tmp_path / "vmhpe_t6_components")
    assert all(p.stat().st_size > 0 for p in written)


def test_one_seed_gives_no_verdict_and_printed_gaps_reach_the_table():
    grid = load_grid("handmle", "noise")
    values = {
        f"{loss}/{labels}": [0.4]
        for loss in ("mle", "integral_l1", "heatmap_l2")
        for labels in ("clean", "noisy")
    }
    report = build_report(grid, rows_for(grid, values), DATASET)
    gaps = {(g["a"], g["b"]): g for g in report["gaps"]}
    assert gaps[("mle/noisy", "heatmap_l2/noisy")]["paper"] == 2.7
    assert all(g["exceeds_2sd"] is None for g in report["gaps"])
    assert best_grid_row(report, grid)[0] == "mle/clean"  # ties keep grid order


def test_apply_writes_params_and_prints_the_dvc_line(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    grid = load_grid("handmle", "a2_loss")
    report = build_report(
        grid, rows_for(grid, {"mle": [0.3], "integral_l1": [0.5], "heatmap_l2": [0.4]}), DATASET
    )
    row, overrides = best_grid_row(report, grid)
    assert row == "integral_l1"
    line = apply_to_params(params, {**overrides, "families.handmle.train.seed": 2}, "handmle")
    written = yaml.safe_load(params.read_text())
    assert written["families"]["handmle"]["model"]["loss_type"] == "integral_l1"
    assert written["families"]["handmle"]["train"]["epochs"] == 22
    assert (
        written["families"]["handmle"]["train"]["seed"] == 0
    )  # the seed is a replicate, not a choice
    assert params.read_text().startswith("# Resolved from profiles/smoke.yaml")
    assert (
        line.startswith("dvc exp run ")
        and "-S 'families.handmle.model.loss_type=\"integral_l1\"'" in line
    )


def test_apply_refuses_an_invalid_value_and_leaves_params(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text()
    from poseops.errors import ConfigError

    with pytest.raises(ConfigError, match="loss_type"):
        apply_to_params(params, {"families.handmle.model.loss_type": "l7"}, "handmle")
    assert params.read_text() == before


def test_set_values_parse_as_yaml():
    assert parse_sets(["a.b=1", "c=[14]", "d=null", "e=mle"]) == {
        "a.b": 1,
        "c": [14],
        "d": None,
        "e": "mle",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "handmle"], "either --grid"),
        (["tune", "handmle", "--grid", "nope"], "no grid 'nope'"),
        (["tune", "handmle", "--search", "random"], "--space"),
        (["tune", "handmle", "--grid", "a2_loss", "--rows", "l9"], "not rows of handmle/a2_loss"),
        (["tune", "handmle", "--grid", "a2_loss", "--part"], "give exactly one seed"),
        (
            ["tune", "handmle", "--grid", "a2_loss", "--part", "--seeds", "0,1"],
            "give exactly one seed",
        ),
        (["tune", "handmle", "--grid", "a2_loss", "--table"], "no grid part has run"),
    ],
)
def test_cli_user_errors_are_one_line(args, message, tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_cli_lists_grids():
    result = CliRunner().invoke(app, ["tune", "vmhpe", "--list"])
    assert result.exit_code == 0
    assert "t6_components" in result.output and "4 rows x 3 seeds" in result.output


def grid_sources(family: str, grid: str) -> set[str]:
    """The grids whose published checkpoints a grid's rows lift (`input_from`)."""
    from poseops.tune.grids import load_grid

    return {
        f"{level.input_from.family}_{level.input_from.grid}"
        for axis in load_grid(family, grid).axes
        for level in axis.levels.values()
        if level.input_from is not None and level.input_from.grid is not None
    }


def test_grids_pipeline_has_a_stage_per_seed_and_a_table_per_grid_file_entry():
    from poseops.tune.grids import list_grids, load_grid

    pipeline = yaml.safe_load((REPO / "grids" / "dvc.yaml").read_text())
    plain, on_variants, tables = (
        pipeline["vars"][0]["grid_parts"],
        pipeline["vars"][1]["variant_grid_parts"],
        pipeline["vars"][2]["grid_tables"],
    )
    every = {(f, g) for f, gs in list_grids().items() for g in gs}
    assert {(t["family"], t["grid"]) for t in tables.values()} == every
    assert all(key == f"{t['family']}_{t['grid']}" for key, t in tables.items())
    parts = {**plain, **on_variants}
    assert len(parts) == len(plain) + len(on_variants)
    assert {(p["family"], p["grid"], p["seed"]) for p in parts.values()} == {
        (f, g, s) for f, g in every for s in load_grid(f, g).seeds
    }
    assert all(key == f"{p['family']}_{p['grid']}_s{p['seed']}" for key, p in parts.items())
    for (
        key,
        p,
    ) in parts.items():  # a grid reading another grid's variants runs after that grid's table
        sources = grid_sources(p["family"], p["grid"])
        assert (key in on_variants) == bool(sources), key
        if sources:
            assert {on_variants[key]["inputs"]} == sources
    for group in ("grid", "grid-on-variants"):
        body = pipeline["stages"][group]["do"]
        assert body["wdir"] == ".." and "data/derived/${item.family}" in body["deps"]
        assert "--part" in body["cmd"] and "--seeds ${item.seed}" in body["cmd"]
        assert {next(iter(o)) if isinstance(o, dict) else o for o in body["outs"]} == {
            "reports/grids/parts/${item.family}_${item.grid}/s${item.seed}.json",
            "models/grids/${item.family}_${item.grid}/s${item.seed}",
        }
    variant_deps = pipeline["stages"]["grid-on-variants"]["do"]["deps"]
    assert {"models/grids/${item.inputs}", "reports/grids/${item.inputs}.json"} <= set(variant_deps)
    table = pipeline["stages"]["table"]["do"]
    assert "reports/grids/parts/${key}" in table["deps"] and "--table" in table["cmd"]
    assert {next(iter(o)) for o in table["outs"]} == {
        f"reports/grids/${{key}}.{s}" for s in ("md", "csv", "png", "json")
    }


def test_a_table_joins_the_seeds_parts_and_names_the_missing_seeds(tmp_path):
    """Two of t3_vs_cid's three seeds have run as parts: the table holds both seeds' trials (runs = 2 a row,
    mean ± SD over them), says seed 2 is missing and how to run it, and names each row's checkpoint from
    the seed validation prefers."""
    from poseops.storage import write_json_atomic
    from poseops.tune import grid_table, part_path

    grid = load_grid("vmhpe", "t3_vs_cid")
    rows = grid.row_names()
    for seed, base in ((0, 0.2), (1, 0.3)):
        trials = [
            {
                "name": f"{row}@s{seed}",
                "row": row,
                "seed": seed,
                "value": base + i / 10,
                "val_value": base + i / 10,
                "test_split_rule": "test: by subject",
                "epochs_run": 3,
                "best_epoch": 3,
                "overrides": {},
            }
            for i, row in enumerate(rows)
        ]
        write_json_atomic(
            part_path(tmp_path, "vmhpe", "t3_vs_cid", seed),
            {
                "family": "vmhpe",
                "grid": "t3_vs_cid",
                "seed": seed,
                "trials": trials,
                "dataset": {
                    "name": "synthetic",
                    "checksums": ["abc"],
                    "urls": ["data/derived/vmhpe"],
                    "split": "test split scored",
                },
                "mlflow_parent_run": f"run{seed}",
                "errors": [],
                "extra_overrides": {},
                "profile": "smoke",
                "tune_state": f".poseops/tune/p{seed}",
                "checkpoints": {
                    row: {
                        "path": f"models/grids/vmhpe_t3_vs_cid/s{seed}/{row}",
                        "trial": f"{row}@s{seed}",
                        "weights_sha256": "x",
                    }
                    for row in rows
                },
            },
        )
    report = grid_table("vmhpe", "t3_vs_cid", tmp_path)
    assert report["seeds_run"] == [0, 1] and report["seeds_missing"] == [2]
    assert all(e["runs"] == 2 for e in report["summary"])
    assert report["summary"][0]["mean"] == pytest.approx(0.25)
    assert {c["path"] for c in report["checkpoints"].values()} == {
        f"models/grids/vmhpe_t3_vs_cid/s1/{row}" for row in rows
    }
    text = (tmp_path / "reports" / "grids" / "vmhpe_t3_vs_cid.md").read_text()
    assert "not yet run: 2" in text and "grid@vmhpe_t3_vs_cid_s2" in text


def test_a_table_without_parts_is_a_clear_error(tmp_path):
    from poseops.tune import grid_table

    with pytest.raises(ConfigError, match=r"no grid part has run.*grid@vmhpe_t3_vs_cid_s<seed>"):
        grid_table("vmhpe", "t3_vs_cid", tmp_path)


def test_tune_state_is_keyed_by_its_inputs():
    from poseops.config import read_yaml
    from poseops.tune import state_key

    base = read_yaml(REPO / "params.yaml")
    trials = load_grid("handmle", "a2_loss").trials()
    assert state_key(base, trials, {}) == state_key(read_yaml(REPO / "params.yaml"), trials, {})
    changed = {**base, "seed": base["seed"] + 1}
    assert state_key(changed, trials, {}) != state_key(base, trials, {})
    assert state_key(base, trials[:2], {}) != state_key(base, trials, {})
    assert state_key(base, trials, {"families.handmle.train.epochs": 1}) != state_key(
        base, trials, {}
    )


def test_trials_of_one_cpu_fill_a_two_cpu_node_exactly():
    """The trial driver takes no CPU (a sliver of the head's resource instead), so two trials whose Train
    workers take 1 CPU each run at once on 2 CPUs; with a token CPU the second waited for the first."""
    from poseops.config import read_yaml
    from poseops.tune import settings_for
    from poseops.tune.runner import HEAD_NODE_RESOURCE, GridRun, resource_overrides, trainable

    run = GridRun(
        family="handmle",
        name="x",
        trials=[],
        base_params=read_yaml(REPO / "params.yaml"),
        project_root=REPO,
        storage_path="unused",
        settings=settings_for("handmle", cpus_per_trial=1.0, max_concurrent_trials=2),
    )
    driver = trainable(run)._resources.required_resources
    assert driver.get("CPU", 0) == 0 and driver[HEAD_NODE_RESOURCE] > 0
    workers = resource_overrides(run)["families.handmle.train.cpus_per_worker"]
    workers *= run.base_params["families"]["handmle"]["train"].get("num_workers", 1)
    assert 2 * (driver.get("CPU", 0) + workers) == 2.0


def test_the_console_shows_one_short_line_per_trial_event(capsys):
    """Tune's own status table prints every trial's whole config (a full params.yaml) at each refresh; the
    grid's progress callback prints the trial's name, the epoch's numbers and the trial counts instead."""
    from types import SimpleNamespace

    from poseops.tune.runner import TrialProgress

    params = {"families": {"handmle": {"model": {"flow_couplings": 6}}}}

    def trial(name: str, status: str):
        config = {"pair": {"trial": {"name": name}, "params": params}}
        return SimpleNamespace(config=config, status=status, error_file="/s/error.txt", path="/s")

    running, waiting, done = (
        trial("mle@s0", "RUNNING"),
        trial("l1@s0", "PENDING"),
        trial("x@s0", "TERMINATED"),
    )
    progress = TrialProgress("handmle_a2_loss", "val_pck")
    trials = [running, waiting, done]
    progress.on_trial_result(
        0, trials, running, {"training_iteration": 5, "val_pck": 0.3451, "train_loss": 14.98}
    )
    progress.on_trial_result(
        0,
        trials,
        running,
        {"done_summary": 1, "best_epoch": 4, "best_val_pck": 0.35, "test_pck": 0.31},
    )
    progress.on_trial_error(0, trials, waiting)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "[grid handmle_a2_loss] mle@s0 epoch 5: val_pck 0.3451 train_loss 14.98 (1 running, 1 done, 1 waiting)"
    )
    assert (
        "best epoch 4" in lines[1]
        and "best_val_pck 0.35" in lines[1]
        and "test_pck 0.31" in lines[1]
    )
    assert lines[2].startswith("[grid handmle_a2_loss] l1@s0 FAILED (see /s/error.txt)")
    assert all("flow_couplings" not in line for line in lines)
