"""The walking skeleton end to end: dvc repro on the smoke profile, learning, DVC's bookkeeping,
promotion gates, the endpoint, and the pipeline submitted as a Ray job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import httpx
import numpy as np
import pytest
import yaml

from conftest import BIN, JOB_LOG, project_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster import free_port, wait_http
from helpers_servers import log_tail, start_process

pytestmark = pytest.mark.slow
FAMILIES = ["handmle", "vmhpe"]  # trained, promoted and served by the smoke pipeline
TOP_DOWN = ["handmle"]  # the families answering one person in a box


def dvc(root: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )


# ---------------------------------------------------------------- learning, measured honestly
def test_trained_handmle_beats_the_better_baseline_by_015(smoke_project):
    report = json.loads((smoke_project / "metrics/handmle/metrics.json").read_text())
    best_baseline = max(report["baselines"].values())
    assert set(report["baselines"]) == {"untrained_pck", "mean_pose_pck"}
    assert report["protocol"]["pck"]["threshold"] == 0.2
    assert report["pck"] - best_baseline >= 0.15, report
    # The smoke recipe (120 epochs) measured 0.725 in make demo (seed 0) against 0.600 at the old 30; this
    # project retrains handmle at seed 1 (0.727 in the recipe benchmark), so the floor leaves seed spread.
    assert report["pck"] >= 0.65, report


def test_trained_hrnet_am_beats_the_mean_pose_and_the_untrained_model_by_015(smoke_project):
    """The smoke recipe's model, scored by evaluate on person crops of held-out subjects (test split)."""
    report = json.loads((smoke_project / "metrics/hrnet_am/metrics.json").read_text())
    assert set(report["baselines"]) == {"untrained_pck", "mean_pose_pck"}
    assert report["protocol"]["pck"]["threshold"] == 0.1
    assert report["protocol"]["pck"]["normaliser"] == "bbox"
    assert report["pck"] - max(report["baselines"].values()) >= 0.15, report


def test_trained_vmhpe_passes_its_gate_on_unseen_sequences(smoke_project):
    from poseops.families import load_params

    report = json.loads((smoke_project / "metrics/vmhpe/metrics.json").read_text())
    gate = load_params(smoke_project / "params.yaml").families["vmhpe"].gate
    assert (
        report["num_images"] == 64 and report["num_people"] > report["num_images"]
    )  # 1-3 people each
    # The smoke gate refuses an untrained model (AP 0.000). Measured in make demo: AP 0.165 on the test
    # split with the 900-step recipe at lr 6e-3 (0.105 with the old 540 steps at 2e-3).
    assert report["ap"] >= gate["min_ap"] >= 0.05, report
    assert report["ap"] - report["baselines"]["untrained_ap"] >= 0.13, report


def champion_of(project: Path, family: str) -> dict:
    """The registry's champion of `family` in `project`'s MLflow store: version and evidence tags."""
    import os

    from poseops.tracking.registry import get_alias_version, version_evidence

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / '.poseops/mlflow.db'}"
    try:
        version = get_alias_version(f"poseops-{family}")
        return {
            "version": version,
            **(version_evidence(f"poseops-{family}", version) if version else {}),
        }
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.mark.parametrize("family", FAMILIES)
def test_promotion_made_a_champion(smoke_project, family):
    """The registry's `champion` alias holds the model the promotion record judged, evaluated on the data
    the record names (or, where that run was refused against a better champion, the champion beat it)."""
    record = json.loads((smoke_project / f"metrics/{family}/promotion.json").read_text())
    champion = champion_of(smoke_project, family)
    assert champion["version"] is not None
    assert champion["dataset_checksum"] == record["dataset_checksum"]
    if record["promoted"]:
        assert champion["weights_sha256"] == record["weights_sha256"]
    else:
        assert (
            record["refusal"]["reason"] == "champion"
            and champion["weights_sha256"] != record["weights_sha256"]
        )


def test_a_refused_promotion_is_recorded_and_strict_stops_dvc_repro(smoke_project, ray_cluster):
    """An untrained challenger at an unreachable gate: `dvc repro` of the promote stage completes with
    `promoted: false` recorded and the champion kept; with `gate.strict` the stage exits 1 and `dvc repro`
    fails there. (The published weights are swapped for untrained ones: the champion's own weights are
    the champion already, never refused.)"""
    from poseops.checkpoints import load_checkpoint, save_checkpoint
    from poseops.models import build_from_config

    params_path, record_path = (
        smoke_project / "params.yaml",
        smoke_project / "metrics/handmle/promotion.json",
    )
    original, champion = params_path.read_text(), champion_of(smoke_project, "handmle")["version"]
    env = project_env(ray_cluster)
    _, info = load_checkpoint(smoke_project / "models/handmle")
    untrained = build_from_config(info["model"], info["config"])
    save_checkpoint(
        smoke_project / "models/handmle",
        "handmle",
        info["model"],
        untrained.state_dict(),
        info["config"],
        info["extra"],
    )
    try:
        params = yaml.safe_load(original)
        params["families"]["handmle"]["gate"]["min_pck"] = 1.1
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        run = dvc(smoke_project, "repro", "--single-item", "promote@handmle", env=env)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        record = json.loads(record_path.read_text())
        assert record["promoted"] is False and record["refusal"]["metric"] == "pck"
        assert champion_of(smoke_project, "handmle")["version"] == champion

        params["families"]["handmle"]["gate"]["strict"] = True
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        run = dvc(smoke_project, "repro", "--single-item", "promote@handmle", env=env)
        assert run.returncode != 0 and "refused" in run.stdout + run.stderr
        assert champion_of(smoke_project, "handmle")["version"] == champion
    finally:
        params_path.write_text(original)
        assert (
            dvc(smoke_project, "checkout", "-f", "train@handmle").returncode == 0
        )  # the trained weights back
        assert dvc(smoke_project, "repro", "promote@handmle", env=env).returncode == 0


# ---------------------------------------------------------------- DVC's bookkeeping
def test_second_repro_runs_no_stage(smoke_project, ray_cluster):
    run = dvc(smoke_project, "repro", env=project_env(ray_cluster))
    assert run.returncode == 0, run.stderr
    assert "Running stage" not in run.stdout, run.stdout


def test_changing_a_training_value_reruns_train_and_what_follows_only(smoke_project):
    params_path = smoke_project / "params.yaml"
    original = params_path.read_text()
    try:
        params = yaml.safe_load(original)
        params["families"]["handmle"]["train"]["lr"] *= 0.5
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = dvc(smoke_project, "repro", "--dry")  # stages whose own inputs changed
        following = dvc(
            smoke_project, "repro", "--dry", "--force-downstream"
        )  # ... and what follows them
        assert changed.returncode == 0 and following.returncode == 0, (
            changed.stderr + following.stderr
        )

        def stages(run):
            return {
                line.split("'")[1]
                for line in run.stdout.splitlines()
                if line.startswith("Running stage")
            }

        assert stages(changed) == {"train@handmle"}
        assert stages(following) == {
            "train@handmle",
            "evaluate@handmle",
            "promote@handmle",
            "report@handmle",
        }
    finally:
        params_path.write_text(original)


# ---------------------------------------------------------------- promotion gate
def test_promoting_an_untrained_checkpoint_is_refused(smoke_project, tmp_path, monkeypatch):
    from poseops.checkpoints import save_checkpoint
    from poseops.errors import GateRefused
    from poseops.families import load_params
    from poseops.models import build_from_config
    from poseops.packaging import log_and_register
    from poseops.tracking.registry import get_alias_version, promote

    monkeypatch.chdir(smoke_project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = load_params(smoke_project / "params.yaml")
    fam = params.families["handmle"]
    report = json.loads((smoke_project / "metrics/handmle/metrics.json").read_text())
    champion_before = get_alias_version("poseops-handmle", "champion")

    untrained = build_from_config("handmle", fam.model)
    folder = tmp_path / "untrained"
    save_checkpoint(
        folder,
        "handmle",
        "handmle",
        untrained.state_dict(),
        fam.model.model_dump(mode="json"),
        extra={},
    )
    version = log_and_register(folder, "handmle")
    with pytest.raises(GateRefused) as refused:
        promote(
            "handmle", version["version"], {"pck": report["baselines"]["untrained_pck"]}, fam.gate
        )
    message = str(refused.value)
    assert "pck" in message and f"{fam.gate['min_pck']:.4f}" in message
    assert f"{report['baselines']['untrained_pck']:.4f}" in message
    assert get_alias_version("poseops-handmle", "champion") == champion_before


# ---------------------------------------------------------------- the endpoint
class Endpoint(NamedTuple):
    base: str  # http://127.0.0.1:<port>
    proc: subprocess.Popen
    log: Path  # the server's stdout and stderr


@pytest.fixture(scope="module")
def endpoint(smoke_project, ray_cluster, tmp_path_factory):
    """`poseops serve` over the smoke project, its output in a log file: a pipe nobody reads fills up
    with the replicas' request logs (Ray forwards them to the driver) and blocks the server."""
    port = free_port()
    log = tmp_path_factory.mktemp("endpoint") / "serve.log"
    proc = start_process(
        [str(BIN / "poseops"), "serve", "--port", str(port)],
        log,
        env=project_env(ray_cluster),
        cwd=smoke_project,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", timeout=120)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"poseops serve did not come up:\n{log_tail(log, 4000)}")
    # A replica loads its family's champion from the registry on its first request: one warm-up
    # request each (any answer), so the tests' default 5 s client timeouts measure the service.
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    for family in FAMILIES:
        httpx.post(
            f"{base}/v1/{family}/predict", files={"image": ("x.png", png, "image/png")}, timeout=120
        )
    yield Endpoint(base, proc, log)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"poseops serve did not stop on SIGTERM:\n{log_tail(log, 4000)}")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's first bytes)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_requests_get_4xx_never_500(endpoint, family):
    base = endpoint.base
    url = f"{base}/v1/{family}/predict"
    assert (
        httpx.post(
            url, files={"image": ("big.png", png_header_only(20000, 20000), "image/png")}
        ).status_code
        == 413
    )
    assert httpx.post(
        url, content=b"", headers={"content-type": "application/json"}
    ).status_code in (400, 422)
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert httpx.post(url, files={"image": ("x.png", noise, "image/png")}).status_code == 422


def champion_folder(project: Path, family: str) -> Path:
    """The served checkpoint: models/<family> when it is the champion (a refused challenger is not)."""
    record = json.loads((project / f"metrics/{family}/promotion.json").read_text())
    if not record["promoted"]:
        pytest.skip(
            f"{family}: the pipeline's model was refused; the endpoint serves an earlier champion"
        )
    return project / "models" / family


def val_example(project: Path, family: str):
    from poseops.demo import held_out_example

    return held_out_example(str(project / "data/derived" / family))


def predict(base: str, family: str, image: np.ndarray, box) -> np.ndarray:
    ok, png = cv2.imencode(".png", image)
    response = httpx.post(
        f"{base}/v1/{family}/predict",
        files={"image": ("x.png", png.tobytes(), "image/png")},
        data={"box": json.dumps([float(v) for v in box])},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == f"poseops-{family}"
    return np.array(body["keypoints"], dtype=np.float64)


@pytest.mark.parametrize("family", TOP_DOWN)
def test_padding_the_image_shifts_the_keypoints(endpoint, smoke_project, family):
    base = endpoint.base
    image, box = val_example(smoke_project, family)
    dx, dy = 37, 21
    padded = cv2.copyMakeBorder(image, dy, 5, dx, 9, cv2.BORDER_CONSTANT, value=0)
    plain = predict(base, family, image, box)
    shifted = predict(base, family, padded, [box[0] + dx, box[1] + dy, box[2], box[3]])
    assert plain.shape == (21, 3)
    np.testing.assert_allclose(shifted[:, :2] - plain[:, :2], np.tile([dx, dy], (21, 1)), atol=0.5)


@pytest.mark.parametrize("family", TOP_DOWN)
def test_endpoint_matches_evaluate_for_the_same_checkpoint(endpoint, smoke_project, family):
    from poseops.checkpoints import build_model_from_checkpoint
    from poseops.datasets.loader import load_split_arrays
    from poseops.datasets.transforms import apply_affine, box_affine, invert_affine
    from poseops.families import load_params
    from poseops.tasks.topdown_crop import predict_crops

    base = endpoint.base
    fam = load_params(smoke_project / "params.yaml").families[family]
    model = build_model_from_checkpoint(champion_folder(smoke_project, family))
    val = load_split_arrays(
        str(smoke_project / "data/derived" / family),
        "test",
        fam.model.input_size,
        fam.data.crop_margin,
    )
    evaluated, _ = predict_crops(model, val["image"][:1])  # evaluate's own path: input px
    image, box = val_example(smoke_project, family)
    to_crop = invert_affine(box_affine(box, fam.data.crop_margin, fam.model.input_size))
    expected = apply_affine(evaluated[0], to_crop)
    served = predict(base, family, image, box)
    np.testing.assert_allclose(served[:, :2], expected, atol=0.5)


def test_vmhpe_endpoint_matches_evaluate_for_the_same_checkpoint(endpoint, smoke_project):
    """Every person the endpoint returns for a validation image is the one evaluate's inference finds."""
    from poseops.checkpoints import build_model_from_checkpoint
    from poseops.families import load_params
    from poseops.tasks.bottomup_image import predict_split, split_from_images

    base = endpoint.base
    fam = load_params(smoke_project / "params.yaml").families["vmhpe"]
    model = build_model_from_checkpoint(champion_folder(smoke_project, "vmhpe"))
    image, box = val_example(smoke_project, "vmhpe")
    assert box is None
    expected = predict_split(
        model, split_from_images([image], fam.model.input_size), flip_test=True
    )[0]
    ok, png = cv2.imencode(".png", image)
    response = httpx.post(
        f"{base}/v1/vmhpe/predict",
        files={"image": ("x.png", png.tobytes(), "image/png")},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    people = response.json()["people"]
    assert len(people) == len(expected["scores"]) > 0
    served = np.array([person["keypoints"] for person in people])
    np.testing.assert_allclose(served[..., :2], expected["keypoints"], atol=0.5)
    np.testing.assert_allclose(
        [person["score"] for person in people], expected["scores"], atol=1e-3
    )


def test_endpoint_answers_real_hand_photos(endpoint, real_fixtures):
    """FreiHAND photos (224 px, real hands) with their labelled boxes: 21 keypoints inside each image."""
    labels = json.loads((real_fixtures / "freihand" / "test_freihand.json").read_text())
    boxes = {ann["image_id"]: ann["bbox"] for ann in labels["annotations"]}
    base = endpoint.base
    for record in labels["images"]:
        image = cv2.imread(str(real_fixtures / "freihand" / record["file_name"]))
        keypoints = predict(base, "handmle", image, boxes[record["id"]])
        assert keypoints.shape == (21, 3) and np.isfinite(keypoints).all()
        inside = (
            (keypoints[:, 0] >= 0)
            & (keypoints[:, 0] < record["width"])
            & (keypoints[:, 1] >= 0)
            & (keypoints[:, 1] < record["height"])
        )
        assert inside.all(), (record["file_name"], keypoints[~inside])


def test_serve_stops_cleanly_on_sigterm(endpoint):
    base, proc, log = endpoint
    assert httpx.get(f"{base}/v1/models").status_code == 200
    assert httpx.get(f"{base}/docs").status_code == 200
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, log_tail(log, 4000)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=2)


# ---------------------------------------------------------------- the pipeline as a Ray job
def job_stages(log: str) -> set[str]:
    """Stages the job ran, or restored from DVC's run-cache (same inputs as an earlier run: a rerun of
    the slow suite on a checkout whose cache holds the first run's results)."""
    ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}
    return ran | {
        line.split("'")[1]
        for line in log.splitlines()
        if line.startswith("Stage '") and "is cached - skipping run" in line
    }


def test_reproduce_flow_submitted_as_a_ray_job_succeeded_and_wrote_metrics(smoke_project):
    """The session's smoke pipeline *is* a Ray job (see conftest): one training serves every slow test."""
    log = (smoke_project / JOB_LOG).read_text()
    assert "succeeded" in log.lower(), log[-2000:]
    assert "train@handmle" in job_stages(log), log[-2000:]
    report = json.loads((smoke_project / "metrics/handmle/metrics.json").read_text())
    assert report["num_samples"] > 0 and 0.0 <= report["pck"] <= 1.0


def test_seeded_job_reran_only_the_changed_family(smoke_project):
    """Started from make demo's results with one family's training seed changed, the job re-ran that
    family's train, evaluate and promote, and nothing of any other family or the data stages."""
    marker = smoke_project / ".poseops" / "seeded_from_demo"
    if not marker.exists():
        pytest.skip("make demo has not run in this checkout: the job built everything")
    family = marker.read_text().strip()
    ran = job_stages((smoke_project / JOB_LOG).read_text())
    assert ran == {
        f"train@{family}",
        f"evaluate@{family}",
        f"promote@{family}",
        f"report@{family}",
    }, ran
