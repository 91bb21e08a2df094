"""dvc.yaml is rendered from the family table, and every stage's deps cover the poseops modules it runs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import yaml

from poseops import dvc_yaml
from poseops import families as families_module
from poseops.dvc_yaml import FAMILY_STAGES, render_file, stage_modules
from poseops.families import Family, families, get_family, load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def committed() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_the_committed_dvc_yaml_is_its_rendering():
    rendered = render_file(REPO, load_params(REPO / "params.yaml"))
    assert (REPO / "dvc.yaml").read_text() == rendered, (
        "dvc.yaml is stale: run `poseops pipeline render`"
    )


def module_path(module: str) -> Path:
    return dvc_yaml.module_file(module).resolve()


def uncovered(modules: set[str], deps: list[str]) -> list[str]:
    paths = [(REPO / d).resolve() for d in deps]
    return sorted(
        str(module_path(m).relative_to(REPO))
        for m in modules
        if not any(module_path(m) == p or p in module_path(m).parents for p in paths)
    )


@pytest.mark.parametrize("stage", ["capture", "annotate"])
def test_shared_stage_deps_cover_the_modules_they_run(committed, stage):
    assert uncovered(stage_modules(stage, None, REPO), committed[stage]["deps"]) == []


@pytest.mark.parametrize("family", sorted(families()))
@pytest.mark.parametrize("stage", FAMILY_STAGES)
def test_family_stage_deps_cover_the_modules_they_run(committed, stage, family):
    if f"{stage}-{family}" in committed:  # a family of its own shape (the lifter): plain stages
        deps = committed[f"{stage}-{family}"]["deps"]
    else:
        assert family in committed[stage]["foreach"]
        deps = committed[stage]["do"]["deps"]
    assert uncovered(stage_modules(stage, get_family(family), REPO), deps) == []


def test_the_lifter_derives_from_the_sequences_annotations(committed):
    """The lifter reads annotate's sequences.json (its task's annotations_file), which annotate declares,
    as capture declares the sequences part; the image families keep labels.json."""
    assert "data/annotations/sequences.json" in committed["derive-lifter"]["deps"]
    assert "data/annotations/labels.json" not in committed["derive-lifter"]["deps"]
    assert "data/annotations/labels.json" in committed["derive"]["do"]["deps"]
    assert "data/annotations/sequences.json" in committed["annotate"]["outs"]
    assert "data/raw/synthetic/sequences" in committed["capture"]["outs"]
    assert "metrics/lifter/per_joint.json" in str(committed["evaluate-lifter"]["plots"])


def test_a_task_codec_is_in_its_family_training_closure_only(committed):
    """Editing the bottom-up codec re-runs train@vmhpe (it encodes vmhpe's targets), not capture."""
    assert "poseops.codecs.bottomup" in stage_modules("train", get_family("vmhpe"), REPO)
    assert "poseops.codecs.bottomup" not in stage_modules("capture", None, REPO)
    assert "platform/poseops/codecs" in committed["train"]["do"]["deps"]
    assert not any(d.startswith("platform/poseops/codecs") for d in committed["capture"]["deps"])


def test_a_family_with_declared_inputs_gets_its_own_stages(tmp_path, monkeypatch):
    lifter = Family(
        name="handlift",
        model="handmle",
        task="topdown_crop",
        skeleton="hand21",
        primary_metric="pck",
        inputs=("handmle",),
    )

    class Entry:
        name, value = "handlift", "tests:handlift"

        def load(self):
            return lifter

    families_module.plugin_families.cache_clear()
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [Entry()] if group == "poseops.families" else [],
    )
    try:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["families"]["handlift"] = raw["families"]["handmle"]
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        stages = yaml.safe_load(render_file(REPO, load_params(tmp_path / "params.yaml")))["stages"]
    finally:
        families_module.plugin_families.cache_clear()
    foreach = set(stages["derive"]["foreach"])
    assert {
        "handmle",
        "vmhpe",
    } <= foreach and "handlift" not in foreach  # not in the shared foreach
    assert (
        "data/predicted/handmle" in stages["derive-handlift"]["deps"]
    )  # its declared input's tracks
    assert set(stages["predict"]["foreach"]) == {"handmle", "hrnet_am"}
    assert stages["train-handlift"]["cmd"] == "python stages/train.py handlift"
    assert "families.handlift.model" in stages["train-handlift"]["params"]
    assert {"capture", "annotate", "evaluate-handlift", "promote-handlift"} <= set(stages)


def test_the_lifter_derives_from_hrnet_am_predictions(committed):
    """predict@hrnet_am reads the trained model (train's output) and the sequences part; derive-lifter
    depends on its tracks, so retraining hrnet_am re-runs the lifter's stages."""
    predict = committed["predict"]
    assert set(predict["foreach"]) == {"hrnet_am"}
    assert predict["do"]["cmd"] == "python stages/predict.py ${key}"
    assert {"models/${key}", "data/raw/synthetic/sequences"} <= set(predict["do"]["deps"])
    assert "platform/poseops/predict.py" in predict["do"]["deps"]
    assert predict["do"]["outs"] == ["data/predicted/${key}"]
    assert predict["do"]["params"] == ["families.${key}.predict"]
    assert "data/predicted/hrnet_am" in committed["derive-lifter"]["deps"]
    assert "models/${key}" in committed["train"]["do"]["outs"]
