"""Grids as DVC experiments: cells, `-S` arguments, and the summary arithmetic."""

import math

import pytest

from poseops.experiments import gap, handmle_noise_grid, set_arguments, summarise


def test_the_noisy_label_grid_has_every_cell_once():
    cells = handmle_noise_grid((0, 1, 2))
    assert len(cells) == 18 and len({c.name for c in cells}) == 18
    noisy = [c for c in cells if c.labels["labels"] == "noisy"]
    assert all(c.overrides["data.capture.hands.outlier_rate"] == 0.2 for c in noisy)
    assert {c.overrides["families.handmle.model.loss_type"] for c in cells} == {"mle", "integral_l1", "heatmap_l2"}


def test_set_arguments_are_yaml_literals():
    args = set_arguments({"a.b": "mle", "c": [24], "d": 0.2})
    assert args == ["-S", 'a.b="mle"', "-S", "c=[24]", "-S", "d=0.2"]


def _row(loss, pck, seed):
    return {"loss": loss, "labels": "noisy", "seed": seed, "epochs_run": 10, "stopped_at_plateau": True,
            "metrics": {"pck": pck, "epe_px": 1.0, "auc": 0.5}}


def test_summary_means_sds_and_the_2sd_rule():
    rows = [_row("mle", v, i) for i, v in enumerate((0.50, 0.52, 0.54))]
    rows += [_row("integral_l1", v, i) for i, v in enumerate((0.40, 0.41, 0.42))]
    summary = summarise(rows, ("loss", "labels"))
    mle = next(e for e in summary if e["loss"] == "mle")
    assert mle["pck"]["mean"] == pytest.approx(0.52) and mle["pck"]["sd"] == pytest.approx(0.02)
    result = gap(summary, "pck", {"labels": "noisy"}, {"loss": "mle"}, {"loss": "integral_l1"})
    assert result["difference"] == pytest.approx(0.11)
    assert result["pooled_sd"] == pytest.approx(math.sqrt((0.02**2 + 0.01**2) / 2))
    assert result["exceeds_2sd"] is True


def test_a_single_run_has_no_2sd_verdict():
    summary = summarise([_row("mle", 0.5, 0), _row("integral_l1", 0.4, 0)], ("loss", "labels"))
    assert gap(summary, "pck", {"labels": "noisy"}, {"loss": "mle"}, {"loss": "integral_l1"})["exceeds_2sd"] is None


def test_report_files_table_and_chart(tmp_path):
    import cv2

    from poseops.experiments import handmle_report, write_report

    rows = [_row("mle", v, i) for i, v in enumerate((0.50, 0.52, 0.54))]
    rows += [_row("integral_l1", v, i) for i, v in enumerate((0.40, 0.41, 0.42))]
    write_report(handmle_report(rows), tmp_path / "grid")
    table = (tmp_path / "grid.md").read_text()
    assert "| mle | noisy | 3 | 0.520 ± 0.020" in table and "| noisy | integral_l1 | +0.1100 |" in table
    chart = cv2.imread(str(tmp_path / "grid.png"))
    assert chart is not None and chart.shape[0] > 100 and chart.std() > 10  # a drawn chart, not a blank page
