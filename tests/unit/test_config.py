"""params.yaml is validated once at the edge: unknown or mistyped keys are named, with what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from poseops.config import Params, read_yaml
from poseops.errors import ConfigError
from poseops.families import families, load_params, model_schemas
from poseops.profiles import write_profile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_raw(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("params") / "params.yaml"
    write_profile(str(REPO / "profiles" / "smoke.yaml"), out)
    return read_yaml(out)


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_committed_params_are_valid_and_typed():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    hand = params.families["handmle"]
    assert type(hand.model).__name__ == "Config"  # the model file's own pydantic Config
    assert hand.model.input_size > 0


@pytest.mark.parametrize("profile", ["smoke", "tiny", "paper"])
def test_every_profile_resolves_and_validates(tmp_path, profile):
    out = write_profile(str(REPO / "profiles" / f"{profile}.yaml"), tmp_path / "params.yaml")
    params = load_params(out)
    assert params.profile == profile
    assert set(params.families) <= set(families())


def test_unknown_top_level_key_is_named_with_allowed_keys(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["famlies"] = {}
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, raw))
    assert (
        "famlies" in str(err.value)
        and "families" in str(err.value)
        and "params.yaml" in str(err.value)
    )


def test_unknown_train_key_is_named(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["handmle"]["train"]["lrr"] = 0.1
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, raw))
    message = str(err.value)
    assert "families.handmle.train.lrr" in message and "lr" in message and "epochs" in message


def test_mistyped_value_is_named(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["handmle"]["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"families\.handmle\.train\.epochs"):
        load_params(write(tmp_path, raw))


def test_model_block_is_validated_by_the_model_config(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["handmle"]["model"]["num_stagez"] = 3
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, raw))
    assert "families.handmle.model.num_stagez" in str(err.value) and "num_stages" in str(err.value)


def test_unknown_family_is_named(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["nosuch"] = raw["families"]["handmle"]
    with pytest.raises(ConfigError, match="families.nosuch"):
        load_params(write(tmp_path, raw))


def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("families: [unclosed\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_params(path)


def test_gate_keys_must_name_a_direction(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["handmle"]["gate"] = {"pck": 0.5}
    with pytest.raises(ConfigError, match="min_"):
        load_params(write(tmp_path, raw))


def test_model_schemas_cover_every_family():
    assert set(model_schemas()) == set(families())


def test_data_block_is_validated_by_the_task_options(tmp_path, smoke_raw):
    params = load_params(REPO / "params.yaml")
    assert type(params.families["handmle"].data).__name__ == "TopdownCropData"
    assert (
        params.families["vmhpe"].data.kind == "bottomup_image"
    )  # from the family's row, not the file
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["vmhpe"]["data"]["crop_format"] = "png"  # a topdown_crop option
    with pytest.raises(ConfigError) as err:
        load_params(write(tmp_path, raw))
    assert "families.vmhpe.data.crop_format" in str(err.value) and "train_window" in str(err.value)


def test_a_data_kind_other_than_the_family_task_is_refused(tmp_path, smoke_raw):
    raw = copy.deepcopy(smoke_raw)
    raw["families"]["handmle"]["data"]["kind"] = "bottomup_image"
    with pytest.raises(ConfigError, match=r"families\.handmle\.data\.kind.*topdown_crop"):
        load_params(write(tmp_path, raw))


def test_task_options_form_a_union_discriminated_on_kind():
    from pydantic import TypeAdapter

    from poseops.tasks import options_union

    adapter = TypeAdapter(options_union())
    assert (
        type(adapter.validate_python({"kind": "lifting_sequence", "sequence_window": 9})).__name__
        == "LiftingSequenceData"
    )
    assert adapter.validate_python({"kind": "multiview_group"}).derive_options() == {"min_views": 2}


def readme_family_rows() -> dict[str, list[str]]:
    """README's model-family table: family -> its cells (paper, smoke profile, paper profile, status)."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_readme_family_table_states_what_each_profile_trains_with(tmp_path):
    """The table's smoke and paper columns name each profile's loss (and hrnet_am's batch and lr), so
    the README cannot drift from profiles/*.yaml."""
    import re

    rows = readme_family_rows()
    fams = {
        profile: load_params(write_profile(profile, tmp_path / f"{profile}.yaml")).families
        for profile in ("smoke", "paper")
    }
    handmle_words = {"integral_l1": "integral-L1", "mle": "MLE", "heatmap_l2": "heatmap L2"}
    vmhpe_words = {"focal": "focal", "mse": "MSE"}
    for column, profile in ((1, "smoke"), (2, "paper")):
        handmle, vmhpe = fams[profile]["handmle"].model, fams[profile]["vmhpe"].model
        assert handmle_words[handmle.loss_type] in rows["handmle"][column], profile
        same = vmhpe.heatmap_loss == fams["smoke"]["vmhpe"].model.heatmap_loss
        cell = rows["vmhpe"][column]
        assert vmhpe_words[vmhpe.heatmap_loss] in cell or (
            profile == "paper" and same and "same loss" in cell
        )
        assert f"E {vmhpe.embed_dim}" in cell, profile
    train = fams["smoke"]["hrnet_am"].train
    batch, lr = re.search(r"batch (\d+) at lr ([0-9.e-]+)", rows["hrnet_am"][1]).groups()
    assert (int(batch), float(lr)) == (train.batch_size, train.lr)
    assert f"{fams['smoke']['lifter'].train.epochs} epochs" in rows["lifter"][1]
    handmle = fams["smoke"]["handmle"].train
    batch, lr, epochs = re.search(
        r"batch (\d+) at lr ([0-9.e-]+) × (\d+) epochs", rows["handmle"][1]
    ).groups()
    assert (int(batch), float(lr), int(epochs)) == (handmle.batch_size, handmle.lr, handmle.epochs)
