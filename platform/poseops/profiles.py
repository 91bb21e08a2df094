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

from poseops.annotations.sources import untracked_sources
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


def added_sources(params_file: Path, profile_raw: dict[str, Any]) -> tuple[list[dict], dict]:
    """The `data.annotations` entries of an existing params file that `poseops data add` put there (their
    labels under data/raw/, DVC-tracked) and the profile does not list, with their `data.weights`
    entries (where the profile sets none): a user's sources outlive a change of profile."""
    try:
        current = read_yaml(params_file).get("data") or {}
    except ConfigError:  # no params file yet, or one that is not YAML: nothing to keep
        return [], {}
    if not isinstance(current, dict):
        return [], {}
    data = profile_raw.get("data") or {}
    listed = {(a.get("name"), a.get("file")) for a in data.get("annotations") or []}
    kept = [
        dict(entry)
        for entry in current.get("annotations") or []
        if isinstance(entry, dict)
        and not untracked_sources([str(entry.get("file", ""))], params_file.parent)
        and (entry.get("name"), entry.get("file")) not in listed
    ]
    names = {entry.get("name") for entry in kept} - {None}
    weights = {
        name: share
        for name, share in (current.get("weights") or {}).items()
        if name in names and name not in (data.get("weights") or {})
    }
    return kept, weights


def write_profile(profile: str, out: str | Path = "params.yaml") -> Path:
    """Resolve `profile` into `out`, keeping the sources `poseops data add` added to `out` (`added_sources`)."""
    source = profile_path(profile)
    raw = read_yaml(source)
    raw.setdefault("profile", source.stem)
    out = Path(out)
    kept, weights = added_sources(out, raw)
    if kept or weights:
        data = dict(raw.get("data") or {})
        data["annotations"] = list(data.get("annotations") or []) + kept
        data["weights"] = {**(data.get("weights") or {}), **weights}
        raw["data"] = data
    resolved = resolve_profile(raw, str(source))
    params = validate_params(resolved, source=str(source))
    values = params.model_dump(mode="json")
    for block in values["families"].values():
        block["data"].pop(
            "kind"
        )  # the family's row names its task (poseops.families); stored there only
    out.write_text(HEADER.format(profile=source.stem) + yaml.safe_dump(values, sort_keys=False))
    return out
