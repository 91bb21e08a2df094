"""MLflow tracking, registry, gates and the registered model format, on a private sqlite store."""

from __future__ import annotations

import base64
import math

import cv2
import mlflow
import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import nn

from poseops import checkpoints, packaging
from poseops.errors import ConfigError, DataError, GateRefused
from poseops.library_logs import library_logs_to_file
from poseops.models import register_model
from poseops.tracking import registry, runs, store


class ToyConfig(BaseModel):
    width: int = 4


@register_model("test_tracking_toy", ToyConfig, {"smoke": {"width": 3}})
def build_toy(config: ToyConfig) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, config.width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One sqlite store for the module (a new store costs seconds of schema creation)."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.setenv("POSEOPS_ROOT", str(root))
        store.configure()
        yield root
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _checkpoint(folder, family: str, seed: int, metrics: dict | None = None):
    torch.manual_seed(seed)
    model = build_toy(ToyConfig(width=3))
    checkpoints.save_checkpoint(
        folder,
        family,
        "test_tracking_toy",
        model.state_dict(),
        ToyConfig(width=3),
        {"metrics": metrics or {}, "run_id": "train-run"},
    )
    return model.eval()


# --- store (no database touched) ------------------------------------------------------------------


def test_default_store_is_sqlite_under_the_project_state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("POSEOPS_ROOT", str(tmp_path))
    assert store.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/.poseops/mlflow.db"
    assert store.artifact_location() == str(tmp_path.resolve() / ".poseops" / "mlartifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert store.tracking_uri() == "http://127.0.0.1:5999"
    assert not store.is_local_store()


# --- gates (pure) ------------------------------------------------------------------------------------


def test_gate_passes_when_every_bound_holds():
    registry.check_gate("fam", {"pck": 0.8, "epe": 3.0}, {"min_pck": 0.8, "max_epe": 3.5})


@pytest.mark.parametrize(
    ("metrics", "gate", "metric", "value", "threshold", "word"),
    [
        ({"pck": 0.4, "epe": 1.0}, {"min_pck": 0.5, "max_epe": 3.0}, "pck", 0.4, 0.5, "below"),
        ({"pck": 0.9, "epe": 4.0}, {"min_pck": 0.5, "max_epe": 3.0}, "epe", 4.0, 3.0, "above"),
        ({"pck": 0.9}, {"min_pck": 0.5, "max_epe": 3.0}, "epe", math.nan, 3.0, "missing"),
        ({"pck": math.nan}, {"min_pck": 0.5}, "pck", math.nan, 0.5, "missing"),
    ],
)
def test_gate_refusal_names_metric_value_and_threshold(
    metrics, gate, metric, value, threshold, word
):
    with pytest.raises(GateRefused) as refused:
        registry.check_gate("fam", metrics, gate)
    error = refused.value
    assert (error.family, error.metric, error.threshold) == ("fam", metric, threshold)
    assert error.value == value or (math.isnan(value) and math.isnan(error.value))
    assert metric in str(error) and word in str(error) and f"{threshold:.4f}" in str(error)


def test_gate_with_an_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="pck_min"):
        registry.check_gate("fam", {"pck": 1.0}, {"pck_min": 0.5})


# --- runs ---------------------------------------------------------------------------------------------


def test_run_logs_flat_params_and_epoch_metrics(mlflow_store):
    with runs.start_run("toyrun", "train-smoke", tags={"stage": "train"}) as run:
        runs.log_params_flat({"train": {"lr": 0.001, "sizes": [1, 2]}, "note": "x" * 7000})
        logged = runs.log_epoch_metrics(
            {"loss": 1.5, "val": {"pck": torch.tensor(0.25)}, "name": "skip"}, step=2
        )
    assert logged == {"loss": 1.5, "val.pck": 0.25}
    found = runs.find_run("toyrun", run.info.run_id)
    assert found.data.params["train.lr"] == "0.001" and found.data.params["train.sizes"] == "[1, 2]"
    assert len(found.data.params["note"]) == runs.MAX_PARAM_LENGTH
    assert found.data.metrics == {"loss": 1.5, "val.pck": 0.25}
    assert found.data.tags["family"] == "toyrun" and found.info.status == "FINISHED"
    experiment = mlflow.get_experiment(found.info.experiment_id)
    assert experiment.name == "poseops-toyrun"
    assert experiment.artifact_location.endswith(f"{mlflow_store.name}/mlartifacts")
    with pytest.raises(DataError, match="poseops-other"):
        runs.find_run("other", run.info.run_id)


# --- registered model format + promotion ---------------------------------------------------------------


def test_registered_model_loads_back_with_equal_outputs(mlflow_store, tmp_path, capsys):
    model = _checkpoint(tmp_path / "ck", "toyreg", seed=1, metrics={"pck": 0.9})
    with runs.start_run("toyreg", "train") as run, library_logs_to_file("promote", tmp_path) as log:
        info = packaging.log_and_register(tmp_path / "ck", "toyreg", run_id=run.info.run_id)
    # MLflow's registration chatter (printed to stderr) reaches the stage's log file, not the console
    assert "Created version" not in capsys.readouterr().err
    assert "Created version '1' of model 'poseops-toyreg'" in log.read_text()
    assert info["name"] == "poseops-toyreg" and info["run_id"] == run.info.run_id
    assert info["model_uri"] == f"models:/poseops-toyreg/{info['version']}"
    registry.promote("toyreg", info["version"], {"pck": 0.9}, {"min_pck": 0.5})

    folder, ident = packaging.download_version("toyreg", "champion")
    assert ident == {"name": "poseops-toyreg", "version": info["version"]}
    assert folder.is_relative_to(mlflow_store)
    x = torch.randn(2, 3, 9, 9)
    expected = model(x).detach().numpy()
    assert np.array_equal(
        checkpoints.build_model_from_checkpoint(folder)(x).detach().numpy(), expected
    )
    again, _ = packaging.download_version("toyreg", info["version"])  # cached copy, verified
    assert again == folder

    pyfunc = mlflow.pyfunc.load_model("models:/poseops-toyreg@champion")
    assert np.array_equal(pyfunc.predict(x.numpy()), expected)

    image_bgr = np.random.default_rng(0).integers(0, 255, (9, 9, 3), dtype=np.uint8)
    png = base64.b64encode(cv2.imencode(".png", image_bgr)[1].tobytes()).decode()
    from_image = pyfunc.predict({"image": png})
    rgb = (
        torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)[None].float()
        / 255
    )
    assert np.allclose(from_image, model(rgb).detach().numpy(), atol=1e-6)

    tags = registry.alias_history("poseops-toyreg")[-1]["tags"]
    assert (
        tags["family"] == "toyreg"
        and tags["metric.pck"] == "0.9"
        and tags["run_id"] == run.info.run_id
    )


def test_refused_gate_moves_no_alias_and_promotion_moves_it(mlflow_store, tmp_path):
    _checkpoint(tmp_path / "a", "toygate", seed=2)
    first = packaging.log_and_register(tmp_path / "a", "toygate")
    with pytest.raises(GateRefused, match="pck = 0.3000 is below") as refused:
        registry.promote("toygate", first["version"], {"pck": 0.3}, {"min_pck": 0.5})
    assert (refused.value.metric, refused.value.value, refused.value.threshold) == ("pck", 0.3, 0.5)
    assert registry.get_alias_version("poseops-toygate", "champion") is None
    with pytest.raises(DataError, match="champion"):
        packaging.download_version("toygate", "champion")

    promoted = registry.promote("toygate", first["version"], {"pck": 0.7}, {"min_pck": 0.5})
    assert promoted["version"] == first["version"] and promoted["previous_version"] is None
    assert registry.get_alias_version("poseops-toygate", "champion") == first["version"]

    _checkpoint(tmp_path / "b", "toygate", seed=3)
    second = packaging.log_and_register(tmp_path / "b", "toygate")
    with pytest.raises(GateRefused):
        registry.promote("toygate", second["version"], {"pck": 0.6}, {"min_pck": 0.65})
    assert registry.get_alias_version("poseops-toygate", "champion") == first["version"]

    history = registry.alias_history("poseops-toygate")
    assert [row["version"] for row in history] == [first["version"], second["version"]]
    assert history[0]["aliases"] == ["champion"] and history[0]["tags"]["gate"] == "passed"
    assert "promoted_at" in history[0]["tags"]
    assert history[1]["aliases"] == [] and history[1]["tags"]["gate"] == "refused"


def test_checkpoint_of_another_family_is_not_registered(mlflow_store, tmp_path):
    _checkpoint(tmp_path / "ck", "toyone", seed=4)
    with pytest.raises(checkpoints.CheckpointError, match="toyone"):
        packaging.log_and_register(tmp_path / "ck", "toytwo")


# --- champion vs challenger, idempotent registration, rollback, history -----------------------------


def _registered(tmp_path, family: str, seed: int, pck: float, checksum: str = "data-a") -> str:
    _checkpoint(tmp_path / f"s{seed}", family, seed=seed)
    version = packaging.log_and_register(tmp_path / f"s{seed}", family)["version"]
    registry.record_evaluation(family, version, {"pck": pck}, checksum, "test")
    return version


def test_a_challenger_must_beat_the_champion_on_the_same_data(mlflow_store, tmp_path):
    from poseops.config import GateParams

    gate = GateParams(min_pck=0.5, min_delta=0.02)
    first = _registered(tmp_path, "toychamp", 20, 0.70)
    assert (
        registry.promote("toychamp", first, gate=gate, primary_metric="pck")["previous_version"]
        is None
    )

    worse = _registered(tmp_path, "toychamp", 21, 0.71)  # passes min_pck, but not by min_delta
    with pytest.raises(registry.ChampionNotBeaten) as refused:
        registry.promote("toychamp", worse, gate=gate, primary_metric="pck")
    message = str(refused.value)
    assert f"v{worse}" in message and f"champion v{first}" in message
    assert "pck = 0.7100" in message and "0.7000" in message and "min_delta 0.02" in message
    assert registry.get_alias_version("poseops-toychamp") == first

    other_data = _registered(tmp_path, "toychamp", 22, 0.95, checksum="data-b")
    with pytest.raises(registry.ChampionNotBeaten, match="other data"):
        registry.promote("toychamp", other_data, gate=gate, primary_metric="pck")
    assert registry.get_alias_version("poseops-toychamp") == first

    better = _registered(tmp_path, "toychamp", 23, 0.73)
    outcome = registry.promote("toychamp", better, gate=gate, primary_metric="pck", why="beats v1")
    assert outcome["changed"] and outcome["previous_version"] == first
    assert registry.get_alias_version("poseops-toychamp") == better


def test_the_same_weights_register_once_and_are_the_champion_already(mlflow_store, tmp_path):
    first = _registered(tmp_path, "toyidem", 30, 0.8)
    registry.promote("toyidem", first, gate={"min_pck": 0.5}, primary_metric="pck")
    again = packaging.log_and_register(tmp_path / "s30", "toyidem")
    assert again["version"] == first and again["registered"] is False
    assert len(registry.alias_history("poseops-toyidem")) == 1
    outcome = registry.promote(
        "toyidem", again["version"], gate={"min_pck": 0.5}, primary_metric="pck"
    )
    assert outcome["changed"] is False and outcome["version"] == first


def test_rollback_returns_to_the_previous_champion_and_history_says_who_when_why(
    mlflow_store, tmp_path, monkeypatch
):
    monkeypatch.setenv("POSEOPS_USER", "ops-alice")
    v1 = _registered(tmp_path, "toyroll", 40, 0.6)
    registry.promote("toyroll", v1, gate={}, primary_metric="pck", why="first")
    v2 = _registered(tmp_path, "toyroll", 41, 0.7)
    registry.promote("toyroll", v2, gate={}, primary_metric="pck", why="better")
    v3 = _registered(tmp_path, "toyroll", 42, 0.5)
    with pytest.raises(GateRefused):
        registry.promote("toyroll", v3, gate={}, primary_metric="pck")

    back = registry.rollback("toyroll", why="latency regression")
    assert (back["version"], back["previous_version"]) == (v1, v2)
    assert registry.get_alias_version("poseops-toyroll") == v1
    with pytest.raises(DataError, match="no earlier one"):
        registry.rollback("toyroll")

    events = registry.history("toyroll")
    assert [(e["event"], e["version"]) for e in events] == [
        ("promoted", v1),
        ("promoted", v2),
        ("refused", v3),
        ("rollback", v1),
    ]
    assert all(e["by"] == "ops-alice" and e["at"] for e in events)
    assert events[1]["why"] == "better" and events[1]["metrics"] == {"pck": 0.7}
    assert events[3]["why"] == "latency regression" and events[3]["previous"] == v2
    description = registry.client().get_model_version("poseops-toyroll", v1).description
    assert (
        "promoted by ops-alice" in description
        and "rollback by ops-alice: latency regression" in description
    )
