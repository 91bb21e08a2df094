"""Profiles (`profiles/<name>.yaml`): named presets plus training and data values.

A profile has params.yaml's shape, except that a family's `model` block may hold `preset: <name>`
and overrides; `write_profile` resolves it through the model file's presets, validates the whole,
and writes every value, defaults included, to params.yaml (the file DVC tracks): each knob is
then visible there and settable with `dvc exp run -S key=value`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from poseops.config import read_yaml
from poseops.errors import ConfigError
from poseops.families import get_family, validate_params
from poseops.models import resolve_config
from poseops.paths import repo_root

HEADER = "# Resolved from profiles/{profile}.yaml by `poseops config use {profile}`; DVC tracks these values.\n"


def profile_path(profile: str) -> Path:
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = repo_root() / "profiles" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (repo_root() / "profiles").glob("*.yaml"))
        raise ConfigError(f"{path}: no such profile; profiles: {', '.join(known)}")
    return path


def resolve_profile(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Expand every `families.<name>.model.preset` into the model's full, validated config."""
    resolved = dict(raw)
    families = {}
    for name, block in (raw.get("families") or {}).items():
        block = dict(block or {})
        model = dict(block.get("model") or {})
        preset = model.pop("preset", None)
        try:
            config = resolve_config(get_family(name).model, preset, **model)
        except ConfigError as exc:
            raise ConfigError(f"{source}: families.{name}.model: {exc}") from None
        block["model"] = config.model_dump(mode="json")
        families[name] = block
    resolved["families"] = families
    return resolved


def write_profile(profile: str, out: str | Path = "params.yaml") -> Path:
    source = profile_path(profile)
    raw = read_yaml(source)
    raw.setdefault("profile", source.stem)
    resolved = resolve_profile(raw, str(source))
    params = validate_params(resolved, source=str(source))
    values = params.model_dump(mode="json")
    for block in values["families"].values():
        block["data"].pop(
            "kind"
        )  # the family's row names its task (poseops.families); stored there only
    out = Path(out)
    out.write_text(HEADER.format(profile=source.stem) + yaml.safe_dump(values, sort_keys=False))
    return out
