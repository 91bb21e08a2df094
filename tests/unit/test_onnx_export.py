"""ONNX export of every 2D family: onnxruntime's outputs against torch's, and the onnx predictor's
keypoints against the torch predictor's (poseops.onnx_models, `poseops export F --format onnx`).

Each family is exported once per module (the dynamo exporter traces the network: 5-15 s a family on
2 shared cores); the tests share that export.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from tests.helpers_checkpoints import derived_hand_sequences, save_tiny
from typer.testing import CliRunner

from poseops import checkpoints, onnx_models
from poseops.cli.main import app
from poseops.families import families
from poseops.tasks import Task

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def two_d_families() -> list[str]:
    """Families whose task feeds images to the network (it implements `network_inputs`)."""
    return sorted(
        name
        for name, family in families().items()
        if type(family.task_module).network_inputs is not Task.network_inputs
    )


# vmhpe: keep every centre proposal, so the untrained network's predictions hold people to compare
TINY_OVERRIDES = {"vmhpe": {"centre_threshold": 0.0, "max_people": 3}}


@pytest.fixture(scope="module", params=two_d_families())
def exported(request, tmp_path_factory):
    """(family, checkpoint folder, export folder, manifest): a tiny checkpoint exported on noise."""
    name = request.param
    root = tmp_path_factory.mktemp(f"onnx-{name}")
    save_tiny(root / "checkpoint", name, **TINY_OVERRIDES.get(name, {}))
    model = checkpoints.build_model_from_checkpoint(root / "checkpoint")
    size = onnx_models.input_size(families()[name], model)
    inputs = onnx_models.random_inputs(size, count=6, seed=1)
    manifest = onnx_models.export_checkpoint(
        root / "checkpoint", root / "export", inputs, "6 noise images"
    )
    return name, root / "checkpoint", root / "export", manifest


def test_families_under_test_include_both_in_tree_2d_families():
    assert {"handmle", "vmhpe"} <= set(two_d_families())


def test_export_matches_torch_within_1e4_and_states_it(exported):
    name, checkpoint, folder, manifest = exported
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx"]
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    equivalence = manifest["equivalence"]
    assert equivalence["inputs"] == 6 and equivalence["within_tolerance"]
    assert set(equivalence["max_abs_diff"]) == set(manifest["outputs"]) and manifest["outputs"]
    for output, diff in equivalence["max_abs_diff"].items():
        assert 0 <= diff <= 1e-4 * max(1.0, equivalence["max_abs_value"][output]), output
    assert "heatmaps" in manifest["outputs"]
    assert equivalence["max_abs_diff"]["heatmaps"] <= 1e-4  # heatmaps before decoding: absolute


def test_batch_axis_is_dynamic_and_outputs_are_torchs(exported):
    name, checkpoint, folder, manifest = exported
    model = checkpoints.build_model_from_checkpoint(checkpoint)
    size = manifest["input"]["shape"][-1]
    forward = onnx_models.OnnxForward(
        onnx_models.session(folder / "model.onnx"), manifest["outputs"]
    )
    for batch in (1, 3):
        images = model.preprocess(torch.from_numpy(onnx_models.random_inputs(size, batch, seed=7)))
        with torch.no_grad():
            expected = model(images)
        got = forward(images)
        for output in manifest["outputs"]:
            assert got[output].shape == expected[output].shape
            scale = max(1.0, float(expected[output].abs().max()))
            assert float((got[output] - expected[output]).abs().max()) <= 1e-4 * scale


def synthetic_image() -> np.ndarray:
    """A 96 x 128 BGR image with a few shapes (the networks are untrained: any texture will do)."""
    image = np.full((96, 128, 3), 40, np.uint8)
    cv2.circle(image, (40, 40), 18, (200, 180, 160), -1)
    cv2.rectangle(image, (70, 30), (110, 85), (60, 200, 90), -1)
    cv2.line(image, (10, 90), (120, 5), (250, 250, 250), 3)
    return image


def numbers(prediction: dict) -> np.ndarray:
    """Every number of a predictor's answer, in order (keypoints, scores, people)."""
    return np.asarray(_flatten(prediction), dtype=np.float64)


def _flatten(value) -> list[float]:
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _flatten(value[key])]
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten(item)]
    return [float(value)]


def test_onnx_predictor_keypoints_equal_torch_predictors(exported):
    from poseops.families import load_predictor

    name, checkpoint, folder, manifest = exported
    torch_predictor = load_predictor(checkpoint)
    onnx_predictor = onnx_models.load_onnx_predictor(checkpoint, export_dir=folder)
    assert onnx_predictor.runtime == "onnx" and type(onnx_predictor) is type(torch_predictor)
    image = synthetic_image()
    for box in (None, [20.0, 10.0, 80.0, 70.0]):
        expected = torch_predictor.predict(image, box)
        got = onnx_predictor.predict(image, box)
        assert expected.keys() == got.keys()
        want, have = numbers(expected), numbers(got)
        assert want.size > 0 and want.shape == have.shape  # same people, same keypoints
        np.testing.assert_allclose(have, want, atol=1e-3, rtol=0)  # pixels and scores


def test_export_of_other_weights_is_refused_for_a_checkpoint(exported, tmp_path):
    name, checkpoint, folder, manifest = exported
    save_tiny(tmp_path / "other", name, seed=1, **TINY_OVERRIDES.get(name, {}))
    with pytest.raises(onnx_models.ExportError, match="exported from weights"):
        onnx_models.onnx_model(tmp_path / "other", folder)


def test_export_with_wrong_input_size_leaves_nothing(tmp_path):
    save_tiny(tmp_path / "checkpoint", "handmle")
    with pytest.raises(onnx_models.ExportError, match=r"the network takes \(32, 32, 3\)"):
        onnx_models.export_checkpoint(
            tmp_path / "checkpoint",
            tmp_path / "export",
            onnx_models.random_inputs(48, 2),
            "noise",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_cli_exports_handmle_and_measures_it_on_the_test_split(tmp_path):
    derived = derived_hand_sequences(tmp_path)
    card = json.loads((derived / "card.json").read_text())
    save_tiny(tmp_path / "checkpoint", "handmle")
    done = CliRunner().invoke(
        app,
        [
            "export",
            "handmle",
            "--format",
            "onnx",
            "--checkpoint",
            str(tmp_path / "checkpoint"),
            "--data",
            str(derived),
            "--out",
            str(tmp_path / "export"),
        ],
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    equivalence = manifest["equivalence"]
    assert equivalence["inputs"] == card["counts"]["test"] > 0
    assert "split 'test'" in equivalence["inputs_source"] and equivalence["within_tolerance"]
    assert max(equivalence["max_abs_diff"].values()) <= 1e-4
    wrong = CliRunner().invoke(
        app, ["export", "vmhpe", "--checkpoint", str(tmp_path / "checkpoint")]
    )
    assert wrong.exit_code == 1 and "family 'handmle', not 'vmhpe'" in wrong.output


def test_serve_runtime_is_validated():
    from poseops.config import FamilyServe

    assert FamilyServe(runtime="onnx").runtime == "onnx"
    with pytest.raises(ValueError, match="runtime"):
        FamilyServe(runtime="tensorrt")


def test_a_served_champion_with_runtime_onnx_answers_like_torch(exported, tmp_path, monkeypatch):
    """deploy.load_registered_predictor (what a Serve replica runs) with serve.runtime onnx: the
    registered version's export comes from `.poseops/onnx/` (seeded here with the module's export,
    so nothing is traced twice) and its keypoints are the torch predictor's."""
    import shutil

    import mlflow

    from poseops import packaging
    from poseops.deploy import load_registered_predictor
    from poseops.paths import state_dir
    from poseops.tracking import registry, store

    name, checkpoint, folder, manifest = exported
    if name != two_d_families()[0]:
        pytest.skip(
            "the deploy wiring is the same for every family; the predictors' equality per "
            "family is test_onnx_predictor_keypoints_equal_torch_predictors"
        )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("POSEOPS_ROOT", str(tmp_path))
    try:
        store.configure()
        version = packaging.log_and_register(checkpoint, name)["version"]
        registry.set_alias(registry.registered_name(name), version)
        shutil.copytree(folder, state_dir() / "onnx" / name / manifest["weights_sha256"][:16])
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        served = load_registered_predictor(name, "champion", uri, runtime="onnx")
        plain = load_registered_predictor(name, "champion", uri, runtime="torch")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert served.runtime == "onnx" and getattr(plain, "runtime", "torch") == "torch"
    image = synthetic_image()
    np.testing.assert_allclose(
        numbers(served.predict(image)), numbers(plain.predict(image)), atol=1e-3, rtol=0
    )
