"""The published checkpoint format (the DVC output of `train@<family>` at `models/<family>/`).

    models/<family>/
      weights.safetensors   the state dict (safetensors: no pickles)
      config.json           {"family", "model", "config": {...the model's full Config...}}
      manifest.json         written LAST: sha256 + size of the two files, extra (best epoch,
                            inference settings). No manifest, no checkpoint.

The folder is a pure function of the weights, config and extra: no times, hosts or run ids, so a
bit-identical training run publishes a bit-identical folder (and DVC sees no change). Run facts live in
MLflow (the training run is tagged with the weights' SHA-256: `tracking.runs.find_training_run`).

`save_checkpoint` writes into a temporary sibling folder and renames it onto the target, so a
reader sees the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from poseops.errors import CheckpointError
from poseops.storage import sha256_file

FORMAT = "poseops-checkpoint/1"
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
MANIFEST = "manifest.json"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers


def _plain_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared tensors; strips a DDP `module.` / compile `_orig_mod.` prefix."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    plain: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in storages:
            tensor = tensor.clone()  # safetensors refuses tensors that share memory (tied weights)
        storages.add(tensor.untyped_storage().data_ptr())
        plain[key] = tensor
    return plain


def _config_dict(config: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def save_checkpoint(
    folder: str | os.PathLike,
    family: str,
    model_name: str,
    state_dict: dict[str, torch.Tensor],
    config: BaseModel | dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish a checkpoint at `folder` (replacing any there); returns the manifest."""
    target = Path(folder).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        save_file(_plain_state_dict(state_dict), str(staging / WEIGHTS), metadata={"format": "pt"})
        (staging / CONFIG).write_bytes(
            _json_bytes({"family": family, "model": model_name, "config": _config_dict(config)})
        )
        manifest = {
            "format": FORMAT,
            "family": family,
            "model": model_name,
            "files": {
                name: {
                    "sha256": sha256_file(staging / name),
                    "bytes": (staging / name).stat().st_size,
                }
                for name in (WEIGHTS, CONFIG)
            },
            "extra": extra or {},
        }
        (staging / MANIFEST).write_bytes(_json_bytes(manifest))
        _replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _replace_folder(staging: Path, target: Path) -> None:
    """Rename `staging` onto `target`; an old `target` is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete, untampered checkpoint; CheckpointError naming the file otherwise."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST}, so no checkpoint is published there")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{manifest_path}: not a checkpoint manifest ({exc})") from None
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: sha256 differs from {MANIFEST} (changed or corrupt)")
    return manifest


def load_checkpoint(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, info) of a verified checkpoint.

    info: {"family", "model", "config" (dict), "extra", "folder", "weights_sha256"}.
    """
    folder = Path(folder)
    manifest = verify_checkpoint(folder)
    config = json.loads((folder / CONFIG).read_text())
    try:
        state_dict = load_file(str(folder / WEIGHTS))
    except SafetensorError as exc:
        raise CheckpointError(f"{folder / WEIGHTS}: unreadable safetensors ({exc})") from None
    info = {
        "family": config["family"],
        "model": config["model"],
        "config": config["config"],
        "extra": manifest.get("extra", {}),
        "folder": str(folder.resolve()),
        "weights_sha256": manifest["files"][WEIGHTS]["sha256"],
    }
    return state_dict, info


def build_model_from_checkpoint(folder: str | os.PathLike) -> nn.Module:
    """Rebuild the model through `build_from_config` and load its weights (strict); eval mode.

    `model.checkpoint_info` holds `load_checkpoint`'s info.
    """
    from poseops.models import build_from_config

    state_dict, info = load_checkpoint(folder)
    config = dict(info["config"])
    if config.get("pretrained"):  # the saved weights replace any pretrained initialisation
        config["pretrained"] = None
    model = build_from_config(info["model"], config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{Path(folder) / WEIGHTS}: does not fit model {info['model']!r}: {exc}"
        ) from None
    model.checkpoint_info = info
    return model.eval()
