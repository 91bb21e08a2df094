"""`poseops assess` (CLI) and `POST /v1/assess` (HTTP): reports, and named errors (exit 1, HTTP 422)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from helpers_assess import motion, reference
from poseops.cli.main import app
from poseops.config import AssessParams, ServeParams
from poseops.serve.ingress import create_api

PHASE = np.linspace(0.0, 1.0, 30)


def as_json(keypoints: np.ndarray, skeleton: str | None = "coco17") -> dict:
    body = {"keypoints": np.where(np.isnan(keypoints), None, keypoints).tolist()}
    if skeleton:
        body["skeleton"] = skeleton
    return body


@pytest.fixture
def files(tmp_path):
    def write(name: str, keypoints: np.ndarray, skeleton: str | None = "coco17"):
        path = tmp_path / name
        path.write_text(json.dumps(as_json(keypoints, skeleton)))
        return path

    return write


def run(*args: str):
    return CliRunner().invoke(app, ["assess", *args])


def test_cli_scores_writes_html_and_json_reports(files, tmp_path):
    ref, trial = (
        files("expert.json", reference()),
        files("trainee.json", motion(PHASE, {"left_elbow": 10.0})),
    )
    result = run(
        "--task",
        "TO",
        "--reference",
        str(ref),
        "--trial",
        str(trial),
        "--out",
        str(tmp_path / "r.json"),
        "--params",
        str(tmp_path / "absent.yaml"),
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["similarity"] == pytest.approx(100 * (0.5 + 0.5 * math.exp(-100 / 450)), abs=0.5)
    assert record["images"] == ["r_curves.png", "r_frames.png"]
    for name in record["images"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html_run = run(
        "--task",
        "TO",
        "--reference",
        str(ref),
        "--trial",
        str(trial),
        "--out",
        str(tmp_path / "r.html"),
        "--params",
        str(tmp_path / "absent.yaml"),
    )
    assert html_run.exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "left_elbow" in page and "data:image/png;base64," in page and "Table 8" in page


def test_cli_reads_the_assess_block_of_params(files, tmp_path):
    ref, trial = (
        files("expert.json", reference()),
        files("trainee.json", motion(PHASE, {"left_elbow": 10.0})),
    )
    params = tmp_path / "params.yaml"
    params.write_text("assess:\n  scoring:\n    weights:\n      TO: {left_elbow: 1.0}\n")
    result = run(
        "--task", "TO", "--reference", str(ref), "--trial", str(trial), "--params", str(params)
    )
    assert result.exit_code == 0 and result.stdout.split()[0] == f"{100 * math.exp(-100 / 450):.2f}"
    params.write_text("assess:\n  scoring:\n    sigma: 3\n")
    bad = run(
        "--task", "TO", "--reference", str(ref), "--trial", str(trial), "--params", str(params)
    )
    assert bad.exit_code == 1 and "assess.scoring.sigma" in bad.output


@pytest.mark.parametrize(
    "case,match",
    [
        ("skeletons", "different skeletons"),
        ("one_frame", "1 frame"),
        ("nan", "frame 3, keypoint 'left_wrist'"),
        ("task", "--task 'XX': unknown"),
        ("missing_file", "no such file"),
    ],
)
def test_cli_bad_input_exits_1_with_a_named_error(files, tmp_path, case, match):
    ref = files("expert.json", reference())
    trial_points = motion(PHASE)
    skeleton, task = "coco17", "TO"
    if case == "one_frame":
        trial_points = trial_points[:1]
    if case == "nan":
        trial_points[3, 9, 0] = np.nan
    if case == "skeletons":
        skeleton = "h36m17"
    if case == "task":
        task = "XX"
    trial = files("trainee.json", trial_points, skeleton)
    if case == "missing_file":
        trial = tmp_path / "nowhere.json"
    result = run(
        "--task",
        task,
        "--reference",
        str(ref),
        "--trial",
        str(trial),
        "--params",
        str(tmp_path / "no.yaml"),
    )
    assert result.exit_code == 1
    assert match in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def http():
    with TestClient(create_api({}, ServeParams()), raise_server_exceptions=False) as client:
        yield client


def test_post_assess_answers_similarity_grade_and_breakdown(http):
    body = {
        "task": "TO",
        "reference": as_json(reference()),
        "trial": as_json(motion(PHASE, {"left_elbow": 10.0}))["keypoints"],
    }
    answer = http.post("/v1/assess", json=body)
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["similarity"] == pytest.approx(100 * (0.5 + 0.5 * math.exp(-100 / 450)), abs=0.5)
    assert (
        record["grade"] == "Professional" and len(record["frames"]) == 30 and "curves" not in record
    )
    weighted = http.post(
        "/v1/assess",
        json={**body, "options": {"weights": {"TO": {"left_elbow": 1}}}, "curves": True},
    )
    assert (
        weighted.json()["similarity"] == pytest.approx(80.07, abs=1.0)
        and "curves" in weighted.json()
    )


@pytest.mark.parametrize(
    "change,status,match",
    [
        (lambda b: b.update(task="XX"), 422, "task 'XX': unknown"),
        (lambda b: b.update(trial=b["trial"][:1]), 422, "trial: 1 frame"),
        (
            lambda b: b.update(reference={"keypoints": b["reference"], "skeleton": "h36m17"}),
            422,
            "different skeletons",
        ),
        (lambda b: b["trial"][2][5].__setitem__(0, None), 422, "frame 2, keypoint 'left_shoulder'"),
        (lambda b: b.update(options={"sigma_deg": -3}), 422, "sigma_deg"),
        (lambda b: b.update(extra=1), 422, "extra"),
        (lambda b: b.update(trial=b["trial"] * 200), 413, "over the limit of 5000"),
    ],
)
def test_post_assess_refuses_bad_requests_with_a_named_reason(http, change, status, match):
    body = {"task": "TO", "reference": reference().tolist(), "trial": reference().tolist()}
    change(body)
    answer = http.post("/v1/assess", json=body)
    assert answer.status_code == status, answer.text
    assert match in answer.json()["detail"]


def test_post_assess_refuses_a_body_over_the_size_limit():
    with TestClient(create_api({}, ServeParams(max_body_bytes=1000))) as small:
        answer = small.post(
            "/v1/assess", json={"task": "TO", "reference": reference().tolist(), "trial": []}
        )
    assert answer.status_code == 413 and "over the limit of 1000 bytes" in answer.json()["detail"]
    assert AssessParams().max_frames == 5000


def test_the_assess_route_is_in_the_openapi_document(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert "/v1/assess" in paths and "/v1/{family}/predict" in paths
    assert set(paths["/v1/assess"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }


def test_the_served_route_scores_with_the_params_assess_block():
    """`poseops serve` passes params.yaml's `assess` block to POST /v1/assess: a narrower sigma lowers
    the same trial's similarity."""
    body = {
        "task": "TO",
        "reference": as_json(reference()),
        "trial": as_json(motion(PHASE, {"left_elbow": 10.0}))["keypoints"],
    }
    answers = {}
    for sigma in (15.0, 5.0):
        settings = AssessParams.model_validate({"scoring": {"sigma_deg": sigma}})
        with TestClient(create_api({}, ServeParams(), settings)) as client:
            answer = client.post("/v1/assess", json=body)
        assert answer.status_code == 200, answer.text
        answers[sigma] = answer.json()["similarity"]
    assert answers[5.0] < answers[15.0] - 5, answers
