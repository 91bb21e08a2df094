"""Keypoints from video for assessment: the person followed, every Nth frame, and `poseops assess` on two
MP4s end to end through a (tiny, untrained) vmhpe checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers_assess import motion, reference
from helpers_assess_video import write_stick_video
from poseops import checkpoints
from poseops.assess import assess
from poseops.assess.video import keypoints_from_video, pick_person
from poseops.cli.main import app
from poseops.errors import DataError
from poseops.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def person(x0, y0, side, score=0.9):
    points = np.zeros((17, 3))
    points[:, 0] = np.linspace(x0, x0 + side, 17)
    points[:, 1] = np.linspace(y0, y0 + side, 17)
    points[:, 2] = score
    return points


def assess_videos(folder, checkpoint, *options: str):
    """`poseops assess --task TO` on folder/expert.mp4 against folder/trainee.mp4 through `checkpoint`."""
    return CliRunner().invoke(
        app,
        [
            "assess",
            *("--task", "TO", "--reference", str(folder / "expert.mp4")),
            *("--trial", str(folder / "trainee.mp4"), "--checkpoint", str(checkpoint)),
            *options,
        ],
    )


def test_the_largest_person_first_then_the_largest_nearest_the_previous():
    small, big = person(0, 0, 50), person(300, 300, 100)
    assert pick_person([small, big], None, 0.05) == 1
    near = person(10, 10, 60)  # smaller than `big` but where the followed person was
    assert pick_person([near, big], (0, 0, 50, 50), 0.05) == 0
    assert (
        pick_person([person(0, 0, 80, score=0.01), small], None, 0.05) == 1
    )  # unseen people do not count
    assert pick_person([], None, 0.05) is None


class TruthPredictor:
    """Answers the sequence's own keypoints (frame after frame) and a smaller bystander far away."""

    name, version = "truth", "1"

    def __init__(self, keypoints):
        self.keypoints, self.calls = keypoints, 0

    def predict(self, image_bgr, box_xywh):
        truth = self.keypoints[self.calls * 2]  # the caller asks for every 2nd frame
        self.calls += 1
        bystander = person(5, 5, 20)
        return {
            "people": [
                {"keypoints": bystander.tolist(), "score": 0.9},
                {"keypoints": np.c_[truth[:, :2] * 0.5, np.full(17, 0.8)].tolist(), "score": 0.8},
            ]
        }


def test_keypoints_from_every_second_frame_follow_the_performer(tmp_path):
    trial = motion(np.linspace(0.0, 1.0, 24), {"left_elbow": 10.0})
    video = write_stick_video(tmp_path / "trial.mp4", trial)
    found = keypoints_from_video(video, TruthPredictor(trial), 17, frame_step=2, min_score=0.05)
    assert found.shape == (12, 17, 3)
    assert np.allclose(found[..., :2], trial[::2] * 0.5)
    result = assess(reference(), found, "TO", weights={"TO": {"left_elbow": 1.0}})
    assert result.similarity == pytest.approx(100 * np.exp(-100 / 450), abs=2.0)
    with pytest.raises(DataError, match="more than 5 sampled frames"):
        keypoints_from_video(video, TruthPredictor(trial), 17, frame_step=2, max_frames=5)
    with pytest.raises(DataError, match="no such video"):
        keypoints_from_video(tmp_path / "none.mp4", TruthPredictor(trial), 17)


def test_cli_assesses_two_mp4s_through_a_vmhpe_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("vmhpe", "tiny", centre_threshold=0.0, max_people=3)
    checkpoints.save_checkpoint(
        tmp_path / "vmhpe",
        "vmhpe",
        "vmhpe",
        model.state_dict(),
        model.config,
        {"inference": {"flip_test": False}},
    )
    write_stick_video(tmp_path / "expert.mp4", reference(16))
    write_stick_video(tmp_path / "trainee.mp4", motion(np.linspace(0, 1, 20), {"left_elbow": 15.0}))
    params = tmp_path / "params.yaml"
    params.write_text("assess:\n  video: {min_score: 0.0}\n")
    result = assess_videos(
        tmp_path,
        tmp_path / "vmhpe",
        "--frame-step",
        "2",
        "--params",
        str(params),
        "--out",
        str(tmp_path / "report.json"),
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "report.json").read_text())
    # an untrained model's keypoints: the path works end to end, the score means nothing
    assert 0.0 <= record["similarity"] <= 100.0 and len(record["frames"]) == 8
    assert {c["name"] for c in record["chains"]} | set(record["skipped"]) == {
        "left_elbow",
        "right_elbow",
    }
    missing = assess_videos(tmp_path, tmp_path / "none")
    assert missing.exit_code == 1 and "no published checkpoint" in " ".join(missing.output.split())


def test_post_assess_with_two_uploaded_clips_goes_through_the_served_body_family(tmp_path):
    from fastapi.testclient import TestClient

    from poseops.config import ServeParams
    from poseops.serve.ingress import LocalClient, create_api
    from poseops.tasks.bottomup_image import BottomUpPredictor

    torch.manual_seed(0)
    predictor = BottomUpPredictor(
        create_model("vmhpe", "tiny", centre_threshold=0.0, max_people=3),
        "poseops-vmhpe",
        "1",
        flip_test=False,
    )
    expert = write_stick_video(tmp_path / "expert.mp4", reference(8)).read_bytes()
    trainee = write_stick_video(
        tmp_path / "trainee.mp4", motion(np.linspace(0, 1, 10), {"left_elbow": 15.0})
    ).read_bytes()
    form = {"task": "TO", "frame_step": "2", "options": '{"min_score": 0.0}'}
    files = {
        "reference": ("expert.mp4", expert, "video/mp4"),
        "trial": ("trainee.mp4", trainee, "video/mp4"),
    }
    with TestClient(
        create_api({"vmhpe": LocalClient(predictor)}, ServeParams()), raise_server_exceptions=False
    ) as client:
        answer = client.post("/v1/assess", data=form, files=files)
        assert answer.status_code == 200, (
            answer.text
        )  # an untrained model: the path works, the score means nothing
        assert len(answer.json()["frames"]) == 4 and answer.json()["task"] == "TO"
        not_video = client.post(
            "/v1/assess",
            data=form,
            files={**files, "trial": ("t.mp4", b"not a video", "video/mp4")},
        )
        assert not_video.status_code == 422 and "'trial'" in not_video.json()["detail"]
        missing = client.post("/v1/assess", data=form, files={"reference": files["reference"]})
        assert missing.status_code == 422 and "'trial': missing" in missing.json()["detail"]
        other = client.post("/v1/assess", data={**form, "family": "handmle"}, files=files)
        assert other.status_code == 404
    small = create_api({"vmhpe": LocalClient(predictor)}, ServeParams(max_pixels=1000))
    with TestClient(small, raise_server_exceptions=False) as client:
        refused = client.post("/v1/assess", data=form, files=files)
        assert refused.status_code == 413 and "pixels" in refused.json()["detail"]
