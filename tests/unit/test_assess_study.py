"""The `assess` stage's study: synthetic experts and trainees beside the paper's Tables 7 and 9."""

import json

from poseops.assess.grades import TABLE7
from poseops.assess.study import write_study
from poseops.config import AssessParams, AssessSyntheticParams


def test_the_study_writes_json_png_and_markdown_with_the_papers_figures(tmp_path):
    settings = AssessParams(synthetic=AssessSyntheticParams(performers=2, trainee_offset_deg=15.0))
    paths = write_study(settings, tmp_path, tmp_path / "metrics.json")
    assert [p.name for p in paths] == [
        "assessment.json",
        "assessment.png",
        "metrics.json",
        "assessment.md",
    ]
    metrics = json.loads(paths[2].read_text())
    assert set(metrics["tasks"]) == set(TABLE7) and metrics["same_direction_all_tasks"] is True
    study = json.loads(paths[0].read_text())
    assert len(study["performers"]) == 5 * 2 * 2
    for task, row in study["tasks"].items():
        assert row["paper_ordinary_similarity"] == TABLE7[task].similarity
        assert row["trainee_offset_deg"] == 15.0
        assert row["same_direction"] == (row["expert_mean"] > row["trainee_mean"])
        assert row["gap"] >= 10.0  # at 15 degrees trainees fall clearly below experts
    assert study["same_direction_all_tasks"]
    assert sum(study["bands"]["expert"].values()) == 10
    text = paths[3].read_text()
    assert "Table 7" in text and "Table 9" in text and "| >=90 | 5 |" in text
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


def test_the_comparison_on_rendered_frames_runs_on_labels_and_on_a_pose_models_keypoints(
    one_thread,
):
    import torch

    from poseops.assess.study import predicted_comparison
    from poseops.models import create_model
    from poseops.tasks.bottomup_image import BottomUpPredictor

    torch.manual_seed(0)
    predictor = BottomUpPredictor(
        create_model("vmhpe", "tiny", centre_threshold=0.0, max_people=2),
        "poseops-vmhpe",
        "1",
        flip_test=False,
    )
    settings = AssessParams(video={"min_score": 0.0})
    rows = predicted_comparison(settings, predictor, offsets=(15.0,), tasks=("CT",), image_size=128)
    assert [(r["source"], r["task"]) for r in rows] == [("labels", "CT"), ("predicted", "CT")]
    labels = rows[0]
    assert (
        labels["gap"] >= 5.0 and labels["expert_mean"] >= 90.0
    )  # the renderer's own labels separate them
    assert (
        rows[1]["errors"] or 0.0 <= rows[1]["expert_mean"] <= 100.0
    )  # an untrained model: mechanics only
