"""reports/<family>.md: every number's row names its dataset (synthetic or real with the card checksum, or the
paper's), split and protocol; the paper's numbers come from its data file; grids show mean +- SD and 2-SD gaps."""

import json
import re

import pytest

from poseops.family_report import paper_numbers, render, table_rows
from poseops.metrics.gaps import reproduced

pytestmark = pytest.mark.usefixtures("one_thread")

CHECKSUM = "ab" * 32
OURS = re.compile(r"^(synthetic|real|mixed) \([0-9a-f]{12}\)$")


def project(tmp_path, kind="synthetic"):
    metrics = {
        "family": "handmle",
        "split": "test",
        "split_rule": "test: 40 samples from 4 of 16 units (by subject; ...)",
        "data": kind,
        "dataset_checksum": CHECKSUM,
        "loss": "integral_l1 (L1 on soft-argmax coordinates, summed over stages; Sun et al., 2018)",
        "num_samples": 40,
        "pck": 0.61,
        "auc": 0.3,
        "baselines": {"mean_pose_pck": 0.25, "untrained_pck": 0.2},
        "per_stage_pck": {"stage1": 0.5, "stage2": 0.58, "stage3": 0.61},
        "margin_over_best_baseline": 0.36,
        "ap50": 0.4,
        "protocol": {
            "pck": {"metric": "PCK", "threshold": 0.2},
            "auc": "area under the PCK curve, thresholds 0-0.5",
            "ap": {"metric": "COCO keypoint AP/AR", "similarity": "OKS"},
        },
    }
    (tmp_path / "metrics" / "handmle").mkdir(parents=True)
    (tmp_path / "metrics" / "handmle" / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "metrics" / "handmle" / "best_worst.png").write_bytes(b"png")
    grid = {
        "family": "handmle",
        "grid": "a2_loss",
        "profile": "smoke",
        "description": "three losses",
        "protocol": "val_pck on the validation split",
        "paper_scale": 0.01,
        "dataset": {
            "name": "synthetic",
            "checksums": [CHECKSUM],
            "split": "validation split (by subject)",
        },
        "summary": [
            {"row": "mle", "runs": 3, "mean": 0.5, "sd": 0.01},
            {"row": "integral_l1", "runs": 3, "mean": 0.55, "sd": 0.01},
        ],
        "gaps": [
            {
                "a": "mle",
                "b": "integral_l1",
                "difference": -0.05,
                "pooled_sd": 0.01,
                "exceeds_2sd": True,
                "paper": 0.37,
            }
        ],
    }
    (tmp_path / "reports" / "grids").mkdir(parents=True)
    (tmp_path / "reports" / "grids" / "handmle_a2_loss.json").write_text(json.dumps(grid))
    history = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_pck": 0.1 * e, "val_pck_stage1": 0.05 * e}
        for e in range(3)
    ]
    model = {"loss_type": "integral_l1", "num_stages": 3}
    return metrics, history, model


@pytest.mark.parametrize("kind", ["synthetic", "real"])
def test_every_row_names_its_dataset_split_and_protocol(tmp_path, kind):
    metrics, history, model = project(tmp_path, kind)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yaml").write_text(
        "families: {handmle: {model: {preset: smoke}}}\n"
    )
    text = render(
        "handmle",
        "smoke",
        "pck",
        model,
        metrics,
        history,
        tmp_path,
        tmp_path / "reports" / "handmle.md",
    )
    assert (tmp_path / "reports" / "handmle.md").read_text() == text
    rows = table_rows(text)
    ours = [r for r in rows if not r["dataset"].startswith("paper: ")]
    paper = [r for r in rows if r["dataset"].startswith("paper: ")]
    assert ours and paper
    for row in ours:
        assert OURS.match(row["dataset"]), row
        assert row["split"], row
    checkpoint = [r for r in ours if "number" in r]
    assert {r["dataset"] for r in checkpoint} == {f"{kind} ({CHECKSUM[:12]})"}
    assert {r["split"] for r in checkpoint} == {"test"} and all(r["protocol"] for r in checkpoint)
    # every number says what it measures: none is left to "see metrics.json"
    protocol = {r["number"]: r["protocol"] for r in checkpoint}
    assert not [n for n, text in protocol.items() if text == "see metrics.json"], protocol
    assert protocol["num_samples"] == "crops scored"
    assert protocol["ap50"].startswith("at OKS 0.50; metric COCO keypoint AP/AR")
    assert protocol["margin_over_best_baseline"].startswith("pck minus the best baseline's pck")
    # a baseline row names the baseline and its own number's protocol
    assert (
        protocol["baseline untrained_pck"]
        == "the untrained model of the training seed: metric PCK, threshold 0.2"
    )
    assert protocol["baseline mean_pose_pck"].startswith("the training split's mean pose")
    assert {"stage1 PCK@0.2", "stage2 PCK@0.2", "stage3 PCK@0.2"} <= {
        r["number"] for r in checkpoint
    }
    # the paper's rows are the data file's numbers, with its dataset
    printed = {(r["row"], r["metric"]): float(r["value"]) for r in paper}
    assert printed == {("mle - integral_l1", "gap"): 0.37, ("mle - heatmap_l2", "gap"): 2.7}
    assert paper_numbers("handmle")["citation"] in text
    # grids: mean and SD per row, each gap against 2 SD and the paper's (scaled) gap
    gap = next(r for r in rows if r.get("gap") == "mle - integral_l1")
    assert (
        gap["exceeds 2 SD"] == "yes"
        and gap["paper's result here"] == "not reproduced (opposite sign, > 2 SD)"
    )
    assert float(gap["paper's gap (same scale)"]) == pytest.approx(0.0037, abs=1e-3)
    assert (
        "Loss: integral_l1" in text
        and "Profile `smoke`, preset `smoke`" in text
        and "test: 40 samples" in text
    )
    assert (tmp_path / "reports" / "handmle" / "learning_curves.png").stat().st_size > 0
    assert "../metrics/handmle/best_worst.png" in text


def test_reproduced_reads_sign_and_spread():
    assert reproduced(0.01, 0.37, True) == "reproduced (same sign, > 2 SD)"
    assert reproduced(0.01, 0.37, False).startswith("not shown")
    assert reproduced(0.01, 0.37, None).startswith("same sign, untested")
    assert reproduced(-0.01, 0.37, True) == "not reproduced (opposite sign, > 2 SD)"
    assert reproduced(-0.01, 0.37, False) == "not reproduced (opposite sign, within 2 SD)"
    assert reproduced(0.01, None, None) == "no paper gap"


def test_every_family_with_a_paper_file_has_valid_numbers():
    for family in ("handmle", "vmhpe"):
        paper = paper_numbers(family)
        assert paper["version"] >= 1 and paper["tables"]
        for table in paper["tables"]:
            assert all(
                isinstance(v, (int, float)) for row in table["rows"].values() for v in row.values()
            )
    assert paper_numbers("vmhpe")["tables"][0]["rows"]["CID"] == {"AP": 92.1, "AR": 94.3}
