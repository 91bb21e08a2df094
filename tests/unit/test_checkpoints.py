"""The published checkpoint format: round trip, atomic replace, refusals (tamper, no manifest)."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import BaseModel
from torch import nn

from poseops import checkpoints
from poseops.errors import CheckpointError
from poseops.models import register_model


class TinyConfig(BaseModel):
    width: int = 4


@register_model("test_ckpt_tiny", TinyConfig, {"smoke": {"width": 3}})
def build_tiny(config: TinyConfig) -> nn.Module:
    return nn.Sequential(
        nn.Linear(5, config.width), nn.ReLU(), nn.Linear(config.width, config.width)
    )


def _model(width: int = 3) -> nn.Module:
    torch.manual_seed(width)
    return build_tiny(TinyConfig(width=width))


def _save(folder, model, width=3, **extra):
    return checkpoints.save_checkpoint(
        folder, "tinyfam", "test_ckpt_tiny", model.state_dict(), TinyConfig(width=width), extra
    )


def test_round_trip_rebuilds_the_same_network(tmp_path):
    model = _model()
    manifest = _save(tmp_path / "ck", model, metrics={"pck": 0.7}, run_id="abc")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "config.json",
        "manifest.json",
        "weights.safetensors",
    ]
    assert set(manifest["files"]) == {"weights.safetensors", "config.json"}

    state, info = checkpoints.load_checkpoint(tmp_path / "ck")
    assert info["family"] == "tinyfam" and info["model"] == "test_ckpt_tiny"
    assert info["config"] == {"width": 3}
    assert info["extra"] == {"metrics": {"pck": 0.7}, "run_id": "abc"}
    for key, tensor in model.state_dict().items():
        assert torch.equal(state[key], tensor)

    rebuilt = checkpoints.build_model_from_checkpoint(tmp_path / "ck")
    x = torch.randn(2, 5)
    assert not rebuilt.training
    assert torch.equal(rebuilt(x), model.eval()(x))


def test_save_replaces_an_existing_checkpoint_and_leaves_no_temp_folders(tmp_path):
    _save(tmp_path / "ck", _model(3), width=3)
    _save(tmp_path / "ck", _model(6), width=6)
    _, info = checkpoints.load_checkpoint(tmp_path / "ck")
    assert info["config"]["width"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_ddp_prefix_is_stripped_and_shared_tensors_are_saved(tmp_path):
    model = _model()
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    wrapped["module.alias"] = wrapped[
        "module.0.weight"
    ]  # shares memory: safetensors alone refuses it
    checkpoints.save_checkpoint(
        tmp_path / "ck", "tinyfam", "test_ckpt_tiny", wrapped, {"width": 3}, {}
    )
    state, _ = checkpoints.load_checkpoint(tmp_path / "ck")
    assert "0.weight" in state and torch.equal(state["alias"], state["0.weight"])


@pytest.mark.parametrize("name", ["weights.safetensors", "config.json"])
def test_tampered_file_is_refused_naming_it(tmp_path, name):
    _save(tmp_path / "ck", _model())
    path = tmp_path / "ck" / name
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=name):
        checkpoints.load_checkpoint(tmp_path / "ck")


def test_folder_without_manifest_is_refused(tmp_path):
    _save(tmp_path / "ck", _model())
    (tmp_path / "ck" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json"):
        checkpoints.load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="manifest.json"):
        checkpoints.build_model_from_checkpoint(tmp_path / "ck")


def test_missing_weights_are_refused(tmp_path):
    _save(tmp_path / "ck", _model())
    (tmp_path / "ck" / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        checkpoints.load_checkpoint(tmp_path / "ck")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    _save(tmp_path / "ck", _model(3), width=3)
    config_path = tmp_path / "ck" / "config.json"
    config = json.loads(config_path.read_text())
    config["config"]["width"] = 5
    config_path.write_text(json.dumps(config))
    manifest_path = (
        tmp_path / "ck" / "manifest.json"
    )  # re-seal so only the shape check can catch it
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["config.json"]["sha256"] = checkpoints.sha256_file(config_path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not fit"):
        checkpoints.build_model_from_checkpoint(tmp_path / "ck")


def test_user_errors_survive_pickling_across_processes():
    import pickle

    from poseops.errors import GateRefused, RequestError

    request = pickle.loads(pickle.dumps(RequestError(422, "box: outside the image")))
    assert request.status == 422 and str(request) == "box: outside the image"
    gate = pickle.loads(pickle.dumps(GateRefused("handmle", "pck", 0.1, 0.3)))
    assert (gate.family, gate.metric, gate.value, gate.threshold) == ("handmle", "pck", 0.1, 0.3)
