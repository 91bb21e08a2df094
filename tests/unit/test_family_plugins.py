"""Families from installed packages (entry point group `poseops.families`) join the family table."""

from __future__ import annotations

import importlib.metadata

import pytest

from poseops import families as families_module
from poseops.errors import ConfigError
from poseops.families import Family, families, get_family

TOY = Family(
    name="toyhands", model="handmle", task="topdown_crop", skeleton="hand21", primary_metric="pck"
)


class FakeEntryPoint:
    def __init__(self, name: str, value: object):
        self.name, self.value, self._value = name, f"toypkg:{name}", value

    def load(self):
        return self._value


@pytest.fixture
def installed(monkeypatch):
    def use(*entries):
        families_module.plugin_families.cache_clear()
        monkeypatch.setattr(
            importlib.metadata,
            "entry_points",
            lambda group: list(entries) if group == "poseops.families" else [],
        )

    yield use
    families_module.plugin_families.cache_clear()


def test_an_installed_family_joins_the_table_with_its_task(installed):
    installed(FakeEntryPoint("toyhands", TOY))
    assert set(families()) == {f.name for f in families_module.IN_TREE} | {"toyhands"}
    assert get_family("toyhands").task_module.name == "topdown_crop"
    assert families_module.data_schemas()["toyhands"].__name__ == "TopdownCropData"


def test_an_entry_point_that_is_not_a_family_is_named(installed):
    installed(FakeEntryPoint("broken", object()))
    with pytest.raises(
        ConfigError, match="broken = toypkg:broken.*expected a poseops.families.Family"
    ):
        families()


def test_a_plugin_may_not_reuse_an_in_tree_name(installed):
    installed(
        FakeEntryPoint("handmle", Family("handmle", "handmle", "topdown_crop", "hand21", "pck"))
    )
    with pytest.raises(ConfigError, match="reuses an in-tree name"):
        families()
