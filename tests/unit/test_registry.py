"""Every registered family builds at its paper size and runs one forward pass at the paper's input size."""

from __future__ import annotations

import pytest
import torch

from poseops.errors import ConfigError
from poseops.models import create_model, list_models, model_entry

# The families poseops ships (other tests register toy models of their own into the same registry).
SHIPPED = [
    name
    for name in list_models()
    if model_entry(name).build.__module__.startswith("poseops.models.")
]


@pytest.mark.parametrize("name", SHIPPED)
def test_paper_preset_builds_and_runs_at_the_paper_input_size(name):
    torch.manual_seed(0)
    model = create_model(name, "paper").eval()
    config = model.config
    if hasattr(config, "input_size"):  # an image model
        inputs = torch.zeros(1, 3, config.input_size, config.input_size)
    else:  # a 2D -> 3D lifter: T frames of J 2D joints
        inputs = torch.zeros(1, config.frames, config.num_joints, 2)
    with torch.no_grad():
        outputs = model(inputs)
    if isinstance(outputs, torch.Tensor):
        outputs = {"output": outputs}
    assert isinstance(outputs, dict) and outputs
    assert all(torch.isfinite(v).all() for v in outputs.values() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_family_has_smoke_tiny_and_paper_presets(name):
    assert {"smoke", "tiny", "paper"} <= set(model_entry(name).presets)


def test_shipped_families_are_registered():
    assert {"handmle", "vmhpe"} <= set(SHIPPED)


def test_overrides_apply_and_unknown_names_are_refused():
    assert create_model("handmle", "tiny", num_stages=1).config.num_stages == 1
    with pytest.raises(ConfigError, match="nosuch"):
        create_model("nosuch")
    with pytest.raises(ConfigError, match="preset"):
        create_model("handmle", "huge")
