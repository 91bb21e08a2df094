"""End to end on the tiny profile, in a temporary folder: every stage, then a query to the endpoint.

Stages run in-process on a local Ray instance (the slow layer runs the same through `dvc repro`
against a `ray start` cluster).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from poseops import pipeline
from poseops.families import load_params
from poseops.family_report import table_rows
from poseops.profiles import write_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    write_profile(str(REPO / "profiles" / "tiny.yaml"), root / "params.yaml")
    patch = pytest.MonkeyPatch()
    patch.setenv("POSEOPS_ROOT", str(root))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    patch.delenv("RAY_ADDRESS", raising=False)
    patch.chdir(root)
    yield root
    import ray

    ray.shutdown()
    patch.undo()


def test_every_stage_then_the_endpoint(tiny_project):
    from poseops.deploy import build_champion_app
    from poseops.serve.runner import serving

    where = pipeline.layout(tiny_project)
    params = load_params(tiny_project / "params.yaml")
    pipeline.capture(params, where)
    pipeline.annotate(params, where)
    card = pipeline.derive("handmle", params, where)
    assert (
        card["counts"]["train"] <= 64 and card["counts"]["val"] > 0 and card["counts"]["test"] > 0
    )
    pipeline.train("handmle", params, where)
    assert (where.model("handmle") / "manifest.json").exists()
    report = pipeline.evaluate("handmle", params, where)
    written = json.loads((where.metrics("handmle") / "metrics.json").read_text())
    assert written["pck"] == report["pck"]
    assert written["split"] == "test" and written["num_samples"] == card["counts"]["test"]
    stages = params.families["handmle"].model.num_stages
    assert set(written["per_stage_pck"]) == {f"stage{t + 1}" for t in range(stages)}
    assert written["loss"].startswith(params.families["handmle"].model.loss_type)
    assert written["data"] == "synthetic" and written["data_mix"] == {
        "synthetic": card["counts"]["train"]
    }
    assert (where.metrics("handmle") / "pck_curve.png").stat().st_size > 0
    report_rows = table_rows(pipeline.report("handmle", params, where))
    checkpoint = [r for r in report_rows if "number" in r]
    assert checkpoint and {r["split"] for r in checkpoint} == {"test"}
    assert {r["dataset"] for r in checkpoint} == {f"synthetic ({written['dataset_checksum'][:12]})"}
    promotion = pipeline.promote("handmle", params, where)
    assert promotion["version"]["name"] == "poseops-handmle"

    bodies = pipeline.derive("vmhpe", params, where)
    assert bodies["kind"] == "bottomup_image" and bodies["counts"]["test"] > 0
    pipeline.train("vmhpe", params, where)
    people_report = pipeline.evaluate("vmhpe", params, where)
    assert (
        people_report["num_images"] == min(4, bodies["counts"]["test"])
        and 0.0 <= people_report["ap"] <= 1.0
    )
    assert pipeline.promote("vmhpe", params, where)["version"]["name"] == "poseops-vmhpe"

    windows = pipeline.derive("lifter", params, where)  # from annotate's sequences.json
    assert windows["kind"] == "lifting_sequence" and windows["window"] == 9
    pipeline.train("lifter", params, where)
    lifted = pipeline.evaluate("lifter", params, where)
    assert lifted["mpjpe"] > 0 and "mean_pose_mpjpe" in lifted["baselines"]
    assert pipeline.promote("lifter", params, where)["version"]["name"] == "poseops-lifter"

    crops = pipeline.derive("hrnet_am", params, where)  # person crops of the bodies (coco17)
    assert crops["kind"] == "topdown_crop" and crops["counts"]["val"] > 0
    pipeline.train("hrnet_am", params, where)
    crop_report = pipeline.evaluate("hrnet_am", params, where)
    assert (
        crop_report["protocol"]["pck"]["normaliser"] == "bbox" and 0.0 <= crop_report["ap"] <= 1.0
    )
    assert pipeline.promote("hrnet_am", params, where)["version"]["name"] == "poseops-hrnet_am"
    tracks = pipeline.predict(
        "hrnet_am", params, where
    )  # its 2D tracks of the sequences (lifter input)
    assert tracks["counts"] == {"rows": 2 * 20, "tracks": 2} and tracks["skeleton"] == "coco17"
    assert (where.predicted("hrnet_am") / "manifest.json").exists()

    app, names = build_champion_app(params)
    assert sorted(names) == ["handmle", "hrnet_am", "lifter", "vmhpe"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    with serving(app, "127.0.0.1", 0) as base:
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        answer = httpx.post(
            f"{base}/v1/handmle/predict",
            files={"image": ("x.png", png.tobytes(), "image/png")},
            data={"box": "10,20,60,80"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        keypoints = np.array(answer.json()["keypoints"])
        assert keypoints.shape == (21, 3)
        assert np.isfinite(keypoints).all()
        assert httpx.post(f"{base}/v1/handmle/predict", content=b"").status_code in (400, 415, 422)
        track = [[[100.0 + j, 50.0 + 5 * j, 1.0] for j in range(17)]] * 5
        answer = httpx.post(
            f"{base}/v1/lifter/predict",
            json={"keypoints": track, "image_size": [128, 128], "skeleton": "h36m17"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["keypoints_3d"]).shape == (17, 3)
        answer = httpx.post(
            f"{base}/v1/hrnet_am/predict",
            files={"image": ("x.png", png.tobytes(), "image/png")},
            data={"box": "10,20,60,80"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert np.array(answer.json()["keypoints"]).shape == (17, 3)
        answer = httpx.post(
            f"{base}/v1/vmhpe/predict",
            files={"image": ("x.png", png.tobytes(), "image/png")},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        for person in answer.json()["people"]:
            keypoints = np.array(person["keypoints"])
            assert keypoints.shape == (17, 3) and np.isfinite(keypoints).all()
            assert (
                (keypoints[:, 0] >= 0).all()
                and (keypoints[:, 0] <= 90).all()
                and (keypoints[:, 1] <= 120).all()
            )


def output_digests(root: Path, outputs: list[str]) -> dict[str, str]:
    """relative path -> SHA-256 of every file of the given DVC outputs (files or folders)."""
    from poseops.storage import sha256_file

    digests = {}
    for out in outputs:
        path = root / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digests.update({str(f.relative_to(root)): sha256_file(f) for f in files})
    return digests


DATA_OUTPUTS = [
    "data/raw/synthetic/hands",
    "data/raw/synthetic/bodies",
    "data/annotations/labels.json",
    "data/derived/handmle",
    "data/derived/vmhpe",
]
TRAIN_OUTPUTS = [
    "models/handmle",
    "plots/handmle/train_history.json",
    "plots/handmle/train_curves.png",
    "metrics/handmle/metrics.json",
    "metrics/handmle/pck_curve.json",
    "metrics/handmle/per_keypoint.json",
    "metrics/handmle/pck_curve.png",
    "metrics/handmle/overlays.png",
    "metrics/handmle/best_worst.png",
    "metrics/handmle/promotion.json",
]


def test_running_the_stages_again_gives_the_same_bytes(tiny_project):
    """Every versioned output is a pure function of its inputs: the data stages and handmle's training,
    evaluation and promotion, run a second time on the same machine (same seed, worker and thread count),
    publish the very same bytes, so DVC sees no change (runs after the test above, on its project)."""
    from poseops.datasets.derive import dataset_checksum
    from poseops.datasets.loader import read_card

    where = pipeline.layout(tiny_project)
    params = load_params(tiny_project / "params.yaml")
    if not (
        where.model("handmle") / "manifest.json"
    ).exists():  # run alone: make the first results here
        pipeline.capture(params, where)
        pipeline.annotate(params, where)
        for family in ("handmle", "vmhpe"):
            pipeline.derive(family, params, where)
        pipeline.train("handmle", params, where)
        pipeline.evaluate("handmle", params, where)
        pipeline.promote("handmle", params, where)
    first = output_digests(tiny_project, DATA_OUTPUTS + TRAIN_OUTPUTS)
    first_checksum = dataset_checksum(read_card(str(where.derived("handmle"))))

    pipeline.capture(params, where)
    pipeline.annotate(params, where)
    for family in ("handmle", "vmhpe"):
        pipeline.derive(family, params, where)
    again = pipeline.train("handmle", params, where)
    pipeline.evaluate("handmle", params, where)
    promoted = pipeline.promote("handmle", params, where)
    second = output_digests(tiny_project, DATA_OUTPUTS + TRAIN_OUTPUTS)

    assert sorted(second) == sorted(first)
    changed = sorted(name for name in first if first[name] != second[name])
    assert changed == [], changed
    assert dataset_checksum(read_card(str(where.derived("handmle")))) == first_checksum
    assert (
        json.loads((where.metrics("handmle") / "metrics.json").read_text())["dataset_checksum"]
        == first_checksum
    )
    # the same weights are registered once; run facts went to MLflow and the logs instead
    assert promoted["version"]["registered"] is False
    logs = tiny_project / ".poseops" / "logs"
    assert len((logs / "derive.jsonl").read_text().splitlines()) >= 4
    assert again["run_id"] in (logs / "train.jsonl").read_text()


def test_a_refusal_is_recorded_strict_fails_and_an_empty_registry_gets_the_champions_back(
    tiny_project, monkeypatch
):
    """An untrained challenger at promote@handmle is refused: `promoted: false` recorded, the champion kept;
    with `gate.strict` it raises (the stage exits 1). On an empty store `restore_champions` re-registers
    what the promotion records say was promoted (DVC skips the cached promote stage there)."""
    import yaml

    from poseops.checkpoints import load_checkpoint, save_checkpoint
    from poseops.errors import GateRefused
    from poseops.models import build_from_config
    from poseops.tracking.registry import get_alias_version

    where = pipeline.layout(tiny_project)
    params = load_params(tiny_project / "params.yaml")
    if not (where.metrics("handmle") / "promotion.json").exists():
        pytest.skip("runs after test_every_stage_then_the_endpoint, on its project")
    champion = get_alias_version("poseops-handmle")
    trained = tiny_project / "trained-handmle"
    shutil.copytree(where.model("handmle"), trained)
    state, info = load_checkpoint(trained)
    untrained = build_from_config(info["model"], info["config"])
    save_checkpoint(
        where.model("handmle"),
        "handmle",
        info["model"],
        untrained.state_dict(),
        info["config"],
        info["extra"],
    )

    def with_gate(**gate) -> object:
        raw = yaml.safe_load((tiny_project / "params.yaml").read_text())
        raw["families"]["handmle"]["gate"] = gate
        path = tiny_project / "params-gate.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_params(path)

    refused = pipeline.promote("handmle", with_gate(min_pck=1.1), where)
    record = json.loads((where.metrics("handmle") / "promotion.json").read_text())
    assert refused["promoted"] is False and record["promoted"] is False
    assert record["refusal"]["metric"] == "pck" and record["refusal"]["threshold"] == 1.1
    assert get_alias_version("poseops-handmle") == champion
    with pytest.raises(GateRefused):
        pipeline.promote("handmle", with_gate(min_pck=1.1, strict=True), where)
    assert get_alias_version("poseops-handmle") == champion

    shutil.rmtree(where.model("handmle"))
    shutil.copytree(trained, where.model("handmle"))
    again = pipeline.promote("handmle", params, where)  # the same weights: the champion already
    assert (
        again["promoted"]
        and again["outcome"]["changed"] is False
        and again["outcome"]["version"] == champion
    )

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tiny_project / 'empty-store.db'}")
    assert get_alias_version("poseops-handmle") is None
    promoted = [
        name
        for name in params.families
        if json.loads((where.metrics(name) / "promotion.json").read_text())["promoted"]
    ]
    assert {"handmle", "vmhpe"} <= set(promoted)
    assert pipeline.restore_champions(params, where) == promoted
    assert all(get_alias_version(f"poseops-{name}") is not None for name in promoted)
    assert pipeline.restore_champions(params, where) == []
