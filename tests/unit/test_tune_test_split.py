"""Grid trials are selected on validation and reported on test: a trial's checkpoint scored by the evaluate
stage's library call, and tables that report the test number with validation beside it."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file
from tests.helpers_checkpoints import derived_hand_sequences, save_tiny

from poseops import checkpoints
from poseops.evaluate import evaluate_model
from poseops.families import get_family, load_params
from poseops.models import model_entry
from poseops.profiles import write_profile
from poseops.tune import adapter, best_grid_row
from poseops.tune.grids import load_grid
from poseops.tune.report import build_report, csv_text, markdown

DATASET = {"name": "synthetic", "checksums": ["abc123"], "split": "test", "urls": ["d"]}
RULE = "test: 9 samples from 1 of 3 units (by sequence)"


@pytest.fixture(scope="module")
def hand_data(tmp_path_factory):
    """A derived hand dataset with a test split (3 sequences, one per split)."""
    return derived_hand_sequences(tmp_path_factory.mktemp("hands"))


def test_a_trial_checkpoint_scores_on_test_as_the_evaluate_stage_would(
    hand_data, tmp_path, repo_root, one_thread
):
    params = load_params(write_profile(repo_root / "profiles" / "tiny.yaml", tmp_path / "p.yaml"))
    family, fam = get_family("handmle"), params.families["handmle"]
    # the evaluate stage's route: the published checkpoint with the train stage's inference settings
    inference = family.task_module.inference(fam, model_entry(family.model).inference)
    model = save_tiny(tmp_path / "published", "handmle", extra={"inference": inference})
    # what a Ray Train checkpoint of the train loop holds (poseops.train.state), of the same weights
    trial = tmp_path / "checkpoint_000"
    trial.mkdir()
    save_file(model.state_dict(), str(trial / "weights.safetensors"))
    meta = {"family": "handmle", "model": family.model, "config": model.config.model_dump()}
    (trial / "config.json").write_text(json.dumps(meta))

    scored = adapter.evaluate_checkpoint(params, "handmle", str(hand_data), trial)
    assert scored["split"] == "test" and scored["split_rule"].startswith("test:")
    assert adapter.test_metric("handmle") == "pck" and 0.0 <= scored["pck"] <= 1.0

    published = checkpoints.build_model_from_checkpoint(tmp_path / "published")
    stage = evaluate_model(family, fam, published, str(hand_data), tmp_path / "metrics")
    assert scored["pck"] == stage["pck"] and scored["num_samples"] == stage["num_samples"]


def trial_rows(values: dict[str, list[tuple[float, float]]]) -> list[dict]:
    """(test, validation) per seed of each row."""
    return [
        {
            "row": row,
            "seed": seed,
            "value": test,
            "val_value": val,
            "test_split_rule": RULE,
            "epochs_run": 2,
            "dataset_url": "d",
        }
        for row, pairs in values.items()
        for seed, (test, val) in enumerate(pairs)
    ]


def test_the_table_reports_test_and_selection_reads_validation():
    grid = load_grid("handmle", "a2_loss")
    # integral_l1 is best on validation, heatmap_l2 on test: the table shows test, --apply picks on val
    rows = trial_rows(
        {
            "mle": [(0.30, 0.35), (0.32, 0.37)],
            "integral_l1": [(0.40, 0.60), (0.42, 0.62)],
            "heatmap_l2": [(0.50, 0.45), (0.52, 0.47)],
        }
    )
    report = build_report(grid, rows, DATASET)
    by_row = {e["row"]: e for e in report["summary"]}
    assert by_row["heatmap_l2"]["mean"] == pytest.approx(0.51)
    assert by_row["heatmap_l2"]["val_mean"] == pytest.approx(0.46)
    assert by_row["mle"]["sd"] == pytest.approx(0.0141421, rel=1e-4)
    assert (report["metric"], report["val_metric"]) == ("pck", "val_pck")
    gaps = {(g["a"], g["b"]): g for g in report["gaps"]}
    assert all(g["difference"] is not None for g in gaps.values())
    first = next(iter(gaps.values()))
    assert first["difference"] == pytest.approx(
        by_row[first["a"]]["mean"] - by_row[first["b"]]["mean"]
    )
    assert best_grid_row(report, grid)[0] == "integral_l1"

    text = markdown(report)
    assert "on the test split (" + RULE in text and "selected by val_pck on the validation" in text
    assert "| ours test pck |" in text and "| ours val_pck (selection) |" in text
    assert "| heatmap_l2 | 2 | 0.510 ± 0.014 |" in text and "| 0.460 ± 0.014 | [2, 2] |" in text
    header, *lines = csv_text(report).splitlines()
    assert "val_mean" in header.split(",") and len(lines) == 3


def test_a_trial_without_a_test_score_shows_as_missing_not_as_a_number():
    grid = load_grid("handmle", "a2_loss")
    rows = trial_rows({"mle": [(float("nan"), 0.3)]})
    report = build_report(grid, rows, DATASET)
    assert "nan" in markdown(report).split("| mle |")[1].split("\n")[0]
