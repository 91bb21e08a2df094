"""The end-of-run summary shows each family's own metrics (its task's headline), never a blank for another kind."""

from __future__ import annotations

import json

from poseops.reporting import headline, metrics_summary_table


def test_each_family_shows_its_task_metrics(tmp_path, capsys):
    for family, metrics in {
        "handmle": {
            "pck": 0.522,
            "auc": 0.31,
            "epe_px": 4.5,
            "num_samples": 200,
            "baselines": {"mean_pose_pck": 0.25},
        },
        "vmhpe": {
            "ap": 0.127,
            "ar": 0.2,
            "count_accuracy": 0.6,
            "num_images": 64,
            "baselines": {"untrained_ap": 0.0},
        },
    }.items():
        (tmp_path / "metrics" / family).mkdir(parents=True)
        (tmp_path / "metrics" / family / "metrics.json").write_text(json.dumps(metrics))
    found = metrics_summary_table(tmp_path, print_it=True)
    assert set(found) == {"handmle", "vmhpe"}
    assert headline("vmhpe", found["vmhpe"]) == ("64", "AP 0.127, AR 0.200, count accuracy 0.600")
    assert headline("handmle", found["handmle"]) == (
        "200",
        "PCK 0.522, AUC 0.310, EPE px 4.500",
    )
    printed = capsys.readouterr().out
    assert "AP 0.127" in printed and "nan" not in printed
