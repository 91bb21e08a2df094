"""Action assessment on keypoints the trained smoke vmhpe predicts from rendered performances: the
expert/trainee comparison beside the same one on the renderer's labels (the gap is reported, in
.poseops/assess/predicted.json and the test output), and `poseops assess` on two rendered MP4s.

Needs the published vmhpe checkpoint `make demo` leaves in models/vmhpe (CI runs it first); skipped
without it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "models" / "vmhpe"


@pytest.fixture(scope="module")
def predictor():
    if not (CHECKPOINT / "manifest.json").is_file():
        pytest.skip("no published vmhpe checkpoint in models/vmhpe (make demo trains one)")
    from poseops.assess.sequences import load_video_predictor

    return load_video_predictor(CHECKPOINT)


def test_the_expert_trainee_gap_on_predicted_keypoints_is_reported_beside_the_labels(predictor):
    from poseops.assess.study import predicted_comparison
    from poseops.config import AssessParams

    rows = predicted_comparison(AssessParams(), predictor, offsets=(0.0, 15.0), performers=1)
    out = REPO / ".poseops" / "assess" / "predicted.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(
            f"{r['offset_deg']:5.1f} {r['task']} {r['source']:9s} experts {r['expert_mean']:6.2f} "
            f"trainees {r['trainee_mean']:6.2f} gap {r['gap']:6.2f} {'; '.join(r['errors'])}",
            file=sys.stderr,
        )
    labels = {(r["offset_deg"], r["task"]): r for r in rows if r["source"] == "labels"}
    assert all(abs(r["gap"]) <= 2.0 for (offset, _), r in labels.items() if offset == 0.0)
    assert all(r["gap"] >= 10.0 for (offset, _), r in labels.items() if offset == 15.0)
    assert len([r for r in rows if r["source"] == "predicted"]) == 10


def test_cli_assesses_two_rendered_mp4s_with_the_trained_vmhpe(predictor, tmp_path):
    from poseops.assess.synthetic import performances, write_performance_video
    from poseops.cli.main import app

    found = [
        p for p in performances(seed=0, performers=1, trainee_offset_deg=15.0) if p.task == "TO"
    ]
    write_performance_video(found[0], tmp_path / "expert.mp4")
    write_performance_video(found[2], tmp_path / "trainee.mp4")
    result = CliRunner().invoke(
        app,
        [
            "assess",
            "--task",
            "TO",
            "--reference",
            str(tmp_path / "expert.mp4"),
            "--trial",
            str(tmp_path / "trainee.mp4"),
            "--checkpoint",
            str(CHECKPOINT),
            "--params",
            str(REPO / "params.yaml"),
            "--out",
            str(tmp_path / "report.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report_curves.png").stat().st_size > 0 and "similarity" in (
        tmp_path / "report.html"
    ).read_text()
