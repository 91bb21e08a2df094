"""Grids as data: each grid expands to its rows, every override is a real params key, every axis changes
the model's parameter count or its loss on a fixed batch, and bad grid files fail naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from poseops.config import HandCaptureParams, read_yaml
from poseops.errors import ConfigError
from poseops.models import create_model
from poseops.tune.adapter import data_fingerprint, validated
from poseops.tune.grids import (
    Dimension,
    apply_overrides,
    data_overrides,
    grids_dir,
    list_grids,
    load_family_grids,
    load_grid,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")

ROWS = {
    ("hrnet_am", "t7_am_layout"): 3,
    ("vmhpe", "t3_vs_cid"): 2,
    ("vmhpe", "t6_components"): 4,
    ("vmhpe", "f11_embed"): 3,
    ("vmhpe", "t5_contrastive"): 2,
    ("handmle", "a1_stages"): 6,
    ("handmle", "a2_loss"): 3,
    ("handmle", "noise"): 6,
    ("handmle", "a3_methods"): 4,
    ("lifter", "t5_input2d"): 4,
    ("lifter", "t6_modules"): 6,
    ("lifter", "t8_position"): 6,
    ("lifter", "t9_frames"): 3,
    ("lifter", "t10_lr"): 4,
}


def test_every_listed_grid_is_there():
    assert {(f, g) for f, grids in list_grids().items() for g in grids} == set(ROWS)


@pytest.mark.parametrize(("family", "name"), sorted(ROWS))
def test_grid_expands_to_its_rows_and_seeds(family, name):
    grid = load_grid(family, name)
    rows = grid.rows()
    assert len(rows) == ROWS[(family, name)]
    assert len({r.name for r in rows}) == len(rows)
    trials = grid.trials()
    assert len(trials) == len(rows) * len(grid.seeds)
    # seed-major: every row once before any row's second seed
    assert [t.row for t in trials[: len(rows)]] == [r.name for r in rows]
    assert {t.overrides[f"families.{family}.train.seed"] for t in trials} == set(grid.seeds)


@pytest.mark.parametrize(("family", "name"), sorted(ROWS))
def test_every_trial_is_valid_params(family, name):
    """Every override names a real key of params.yaml and a value its schema (the model's Config) takes."""
    base = read_yaml(REPO / "params.yaml")
    for trial in load_grid(family, name).trials():
        params = validated(apply_overrides(base, trial.overrides), source=trial.name)
        for key, value in trial.overrides.items():
            node = params.model_dump(mode="json")
            for part in key.split("."):
                node = node[part]
            assert node == (list(value) if isinstance(value, tuple) else value), key


def test_paper_numbers_are_the_papers():
    t6 = load_grid("vmhpe", "t6_components").paper
    assert (
        t6.rows["none"]["AP"] == 92.1
        and t6.rows["both"]["AP"] == 94.4
        and t6.rows["mffm"]["AR"] == 95.4
    )
    assert load_grid("vmhpe", "f11_embed").paper.rows["e16"] == {"AP": 94.4, "AR": 95.8}
    t3 = load_grid("vmhpe", "t3_vs_cid").paper
    assert t3.rows == {"cid": {"AP": 92.1, "AR": 94.3}, "vmhpe": {"AP": 94.4, "AR": 95.8}}
    gaps = {(g.a, g.b): g.value for g in load_grid("handmle", "noise").paper.gaps}
    assert gaps == {("mle", "integral_l1"): 0.37, ("mle", "heatmap_l2"): 2.7}
    for family in ("vmhpe", "handmle"):
        for name in load_family_grids(family).grids:
            assert "(20" in load_grid(family, name).paper.citation  # authors (year), title


# ---------------------------------------------------------------- every axis matters
def handmle_batch(size: int, seed: int = 0):
    from poseops.codecs.integral import to_norm

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(4, 3, size, size, generator=g)
    target_px = torch.rand(4, 21, 2, generator=g) * (size * 0.75) + size * 0.125
    return images, target_px, to_norm, torch.ones(4, 21)


def noisy_labels(target_px: torch.Tensor, hands: HandCaptureParams, size: int) -> torch.Tensor:
    """The synthetic capture's own label corruption applied to the batch's labels."""
    from poseops.capture.common import NoiseParams, add_label_noise

    rng = np.random.default_rng(0)
    noise = NoiseParams.of(hands)
    out = [
        add_label_noise(rng, t.numpy().astype(np.float64), float(size), noise) for t in target_px
    ]
    return torch.tensor(np.stack(out), dtype=torch.float32)


def handmle_signature(model_overrides: dict, capture_overrides: dict) -> tuple[int, float]:
    torch.manual_seed(0)
    model = create_model("handmle", "tiny", **model_overrides).eval()
    size = model.config.input_size
    images, target_px, to_norm, weight = handmle_batch(size)
    if capture_overrides:
        target_px = noisy_labels(target_px, HandCaptureParams(**capture_overrides), size)
    with torch.no_grad():
        loss = model.loss(
            model(images), {"target_norm": to_norm(target_px, size), "weight": weight}
        )["loss"]
    return sum(p.numel() for p in model.parameters()), round(float(loss), 6)


def hrnet_am_signature(model_overrides: dict, capture_overrides: dict) -> tuple[int, float]:
    from poseops.codecs.integral import to_norm

    assert not capture_overrides, "no hrnet_am axis changes the captures yet"
    torch.manual_seed(0)
    model = create_model("hrnet_am", "tiny", **model_overrides).eval()
    size = model.config.input_size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, size, size, generator=g)
    target = to_norm(torch.rand(2, 17, 2, generator=g) * size * 0.75 + size * 0.125, size)
    with torch.no_grad():
        loss = model.loss(model(images), {"target_norm": target, "weight": torch.ones(2, 17)})[
            "loss"
        ]
    return sum(p.numel() for p in model.parameters()), round(float(loss), 6)


def test_hrnet_am_layout_parameter_counts():
    """Ours, reported beside Table VII in grids/hrnet_am.yaml (whose printed counts fall as modules are
    added): every level of t7_am_layout at the paper (W32) and smoke presets."""
    grid = load_grid("hrnet_am", "t7_am_layout")
    counts = {}
    for preset in ("paper", "smoke"):
        for level, spec in grid.axes[0].levels.items():
            layout = spec.set["families.hrnet_am.model.am_layout"]
            model = create_model("hrnet_am", preset, am_layout=layout)
            counts[(preset, level)] = sum(p.numel() for p in model.parameters())
    assert counts == {
        ("paper", "none"): 28_536_113,
        ("paper", "4"): 28_545_143,
        ("paper", "9"): 28_551_351,
        ("smoke", "none"): 745_645,
        ("smoke", "4"): 748_020,
        ("smoke", "9"): 748_087,
    }
    text = (grids_dir() / "hrnet_am.yaml").read_text()
    assert all(f"{n:,}" in text for n in counts.values())  # the grid file states these counts


def vmhpe_signature(model_overrides: dict, capture_overrides: dict) -> tuple[int, float]:
    from poseops.codecs.bottomup import encode_targets
    from poseops.models.vmhpe import target_kwargs

    assert not capture_overrides, (
        "no vmhpe axis changes the captures yet: add its label corruption here"
    )
    torch.manual_seed(0)
    model = create_model("vmhpe", "tiny", **model_overrides).eval()
    size = model.config.input_size
    g = torch.Generator().manual_seed(0)
    anchors = torch.tensor([[0.3, 0.3], [0.7, 0.7]]) * size
    keypoints = []
    for _ in range(2):
        xy = anchors[:, None, :] + (torch.rand(2, 17, 2, generator=g) - 0.5) * size / 3
        keypoints.append(torch.cat([xy, torch.full((2, 17, 1), 2.0)], dim=-1))
    images = torch.randn(2, 3, size, size, generator=g)
    with torch.no_grad():
        loss = model.loss(
            model(images), {"targets": encode_targets(keypoints, **target_kwargs(model.config))}
        )["loss"]
    return sum(p.numel() for p in model.parameters()), round(float(loss), 6)


def lifter_signature(model_overrides: dict, run_overrides: dict) -> tuple:
    """Parameter count and loss on a fixed batch, plus the data and training settings a level changes
    (the 2D source and the learning rate act through the data and the optimiser, not the network)."""
    torch.manual_seed(0)
    model = create_model("lifter", "tiny", **{**model_overrides, "layer_scale_init": 1.0}).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, model.config.frames, 17, 2, generator=g) * 0.3
    with torch.no_grad():
        loss = model.loss(model(x), {"target": torch.zeros(2, 17, 3)})["loss"]
    params = sum(p.numel() for p in model.parameters())
    return params, round(float(loss), 6), tuple(sorted(run_overrides.items()))


SIGNATURE = {
    "handmle": handmle_signature,
    "vmhpe": vmhpe_signature,
    "lifter": lifter_signature,
}
SIGNATURE["hrnet_am"] = hrnet_am_signature


def split_level(family: str, overrides: dict) -> tuple[dict, dict]:
    model, capture = {}, {}
    for key, value in overrides.items():
        if key.startswith(f"families.{family}.model."):
            model[key.rsplit(".", 1)[-1]] = value
        elif key.startswith("data.capture.hands."):
            capture[key.rsplit(".", 1)[-1]] = value
        elif family == "lifter" and key.startswith(
            ("families.lifter.data.", "families.lifter.train.")
        ):
            capture[key] = value
        else:
            raise AssertionError(
                f"{key}: an axis key this test cannot judge; teach it how the key acts"
            )
    return model, capture


@pytest.mark.parametrize(("family", "name"), sorted(ROWS))
def test_every_axis_changes_the_parameter_count_or_the_loss(family, name):
    grid = load_grid(family, name)
    for axis in grid.axes:
        signatures = {}
        for level_name, level in axis.levels.items():
            # a level may also change where its input comes from (another family's grid row)
            signatures[level_name] = (
                SIGNATURE[family](*split_level(family, level.set)),
                level.input_from,
            )
        levels = list(signatures)
        for i, a in enumerate(levels):
            for b in levels[i + 1 :]:
                assert signatures[a] != signatures[b], (
                    f"{name}: axis {axis.name}: {a} and {b} build the same "
                    f"model with the same loss {signatures[a]}"
                )


# ---------------------------------------------------------------- data variants
def test_only_rows_that_change_the_data_get_their_own_dataset():
    base = read_yaml(REPO / "params.yaml")
    fingerprints = {}
    for trial in load_grid("handmle", "noise").trials([0]):
        params = validated(apply_overrides(base, trial.overrides), trial.name)
        fingerprints[trial.row] = data_fingerprint(params, "handmle")
    assert (
        len({fingerprints[f"{loss}/noisy"] for loss in ("mle", "integral_l1", "heatmap_l2")}) == 1
    )
    assert fingerprints["mle/noisy"] != fingerprints["mle/clean"]
    assert fingerprints["mle/clean"] == data_fingerprint(validated(base, "params.yaml"), "handmle")
    assert data_overrides(load_grid("handmle", "a2_loss").trials()[0].overrides, "handmle") == {}


# ---------------------------------------------------------------- bad files
def write_grid_file(folder: Path, body: dict) -> Path:
    path = folder / "handmle.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def minimal(**grid) -> dict:
    body = {
        "paper": {"citation": "A (2024), T", "table": "T1", "dataset": "D", "metrics": ["PCK"]},
        "axes": [{"name": "loss", "levels": {"a": {"set": {}}, "b": {"set": {}}}}],
        **grid,
    }
    return {"family": "handmle", "metric": "pck", "grids": {"g": body}}


def test_a_paper_row_that_is_no_grid_row_names_the_file_and_key(tmp_path):
    body = minimal()
    body["grids"]["g"]["paper"]["rows"] = {"c": {"PCK": 1.0}}
    write_grid_file(tmp_path, body)
    with pytest.raises(ConfigError, match=r"handmle\.yaml: grids\.g.*'c' is not a row"):
        load_grid("handmle", "g", tmp_path)


def test_unknown_key_and_single_level_axis_are_errors(tmp_path):
    body = minimal(colour="red")
    write_grid_file(tmp_path, body)
    with pytest.raises(ConfigError, match="colour"):
        load_family_grids("handmle", tmp_path)
    body = minimal()
    body["grids"]["g"]["axes"][0]["levels"] = {"a": {"set": {}}}
    write_grid_file(tmp_path, body)
    with pytest.raises(ConfigError, match="at least 2 levels"):
        load_family_grids("handmle", tmp_path)


def test_missing_family_file_and_grid_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no grid file for family 'nope'"):
        load_grid("nope", "g")
    with pytest.raises(ConfigError, match="no grid 'nope'; grids: a1_stages"):
        load_grid("handmle", "nope")


def test_override_of_a_missing_key_names_it():
    with pytest.raises(ConfigError, match="families.handmle.modle"):
        apply_overrides(
            read_yaml(REPO / "params.yaml"), {"families.handmle.modle.num_stages": 2}, "grid x"
        )
    with pytest.raises(ConfigError, match=r"num_stagez: unknown key"):
        validated(
            apply_overrides(
                read_yaml(REPO / "params.yaml"), {"families.handmle.model.num_stagez": 2}
            ),
            "g",
        )


def test_input_from_another_family_is_part_of_the_format(tmp_path):
    body = minimal()
    body["family"] = "handmle"
    body["grids"]["g"]["axes"][0]["levels"]["b"]["input_from"] = {
        "family": "vmhpe",
        "grid": "t6_components",
        "row": "both",
    }
    write_grid_file(tmp_path, body)
    rows = {r.name: r for r in load_grid("handmle", "g", tmp_path).rows()}
    assert rows["a"].input_from is None
    assert rows["b"].input_from.family == "vmhpe" and rows["b"].input_from.row == "both"


def test_search_dimensions_check_their_bounds():
    assert Dimension(kind="loguniform", low=1e-4, high=1e-2).low == 1e-4
    with pytest.raises(ValueError, match="low > 0"):
        Dimension(kind="loguniform", low=0, high=1)
    with pytest.raises(ValueError, match="non-empty"):
        Dimension(kind="choice", values=[])
    for family in ("vmhpe", "handmle"):
        assert load_family_grids(family).spaces, family
    assert grids_dir().name == "grids"


# ---------------------------------------------------------------- trials prepared on the driver
def test_trial_configs_derive_each_data_variant_once_and_reject_foreign_inputs(
    tmp_path, monkeypatch
):
    from poseops.tune import adapter
    from poseops.tune.runner import GridRun, trial_configs

    derived = []

    def fake_derive(params, family, root, annotations=None):
        derived.append(root.name)
        return str(root / "data" / "derived" / family)

    monkeypatch.setattr(adapter, "derive_variant", fake_derive)
    base = read_yaml(REPO / "params.yaml")
    grid = load_grid("handmle", "noise")
    run = GridRun(
        family="handmle",
        name="handmle_noise_x",
        trials=grid.trials([0]),
        base_params=base,
        project_root=tmp_path,
        storage_path=str(tmp_path / "tune"),
        extra_overrides={"families.handmle.train.epochs": 1},
    )
    configs = {c["trial"]["row"]: c for c in trial_configs(run, tmp_path / "variants")}
    assert configs["mle/clean"]["trial"]["dataset_url"] == str(
        tmp_path / "data" / "derived" / "handmle"
    )
    assert len(set(derived)) == 1 and len(derived) == 3  # the noisy rows share one variant
    assert configs["heatmap_l2/noisy"]["trial"]["dataset_url"].startswith(
        str(tmp_path / "variants")
    )
    assert configs["mle/noisy"]["params"]["families"]["handmle"]["train"]["epochs"] == 1
    assert configs["mle/noisy"]["params"]["data"]["capture"]["hands"]["outlier_rate"] == 0.2

    body = minimal()
    body["grids"]["g"]["axes"][0]["levels"]["b"]["input_from"] = {"family": "vmhpe"}
    write_grid_file(tmp_path, body)
    foreign = GridRun(
        family="handmle",
        name="g",
        trials=load_grid("handmle", "g", tmp_path).trials(),
        base_params=base,
        project_root=tmp_path,
        storage_path=str(tmp_path / "tune"),
    )
    with pytest.raises(ConfigError, match="takes its input from family 'vmhpe'.*does not read"):
        trial_configs(foreign, tmp_path / "variants")


def test_scheduler_option_and_resources_per_trial(tmp_path):
    from ray.tune.schedulers import ASHAScheduler

    from poseops.tune.grids import TuneSettings
    from poseops.tune.runner import GridRun, resource_overrides, scheduler_for

    assert scheduler_for(TuneSettings(), "val_pck") is None
    assert isinstance(scheduler_for(TuneSettings(scheduler="asha"), "val_pck"), ASHAScheduler)
    base = read_yaml(REPO / "params.yaml")
    base["families"]["handmle"]["train"]["num_workers"] = 2
    run = GridRun(
        family="handmle",
        name="x",
        trials=[],
        base_params=base,
        project_root=tmp_path,
        storage_path=str(tmp_path),
        settings=TuneSettings(cpus_per_trial=1.0),
    )
    assert resource_overrides(run) == {"families.handmle.train.cpus_per_worker": 0.5}
    run.settings = TuneSettings()
    assert resource_overrides(run) == {}
