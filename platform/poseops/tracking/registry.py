"""The MLflow model registry for poseops: gates, aliases, promotion history.

Registered models are named `poseops-<family>`; the serving alias is `champion`. A version is
registered first (see `poseops.packaging.log_and_register`) and only `promote` moves the alias,
after `check_gate` passed: a refused gate leaves every alias where it was.

A gate is a flat mapping `{"min_<metric>": threshold, "max_<metric>": threshold}`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poseops.errors import ConfigError, DataError, GateRefused
from poseops.tracking import store

CHAMPION = "champion"


def registered_name(family: str) -> str:
    return f"poseops-{family}"


def client() -> MlflowClient:
    uri = store.configure()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _refusal(family: str, metric: str, value: float, threshold: float, reason: str) -> GateRefused:
    """GateRefused whose message says why (`below` a min, `above` a max, or `missing`)."""
    error = GateRefused(family, metric, value, threshold)
    error.reason = reason
    if reason == "missing":
        message = f"promotion of {family!r} refused: metric {metric} is missing; the gate needs it (threshold {threshold:.4f})"
    else:
        message = f"promotion of {family!r} refused: {metric} = {value:.4f} is {reason} the gate threshold {threshold:.4f}"
    error.args = (message,)
    return error


def check_gate(family: str, metrics: Mapping[str, float], gate: Mapping[str, float]) -> None:
    """Raise GateRefused(family, metric, value, threshold) for the first failing gate entry.

    `min_<m>` refuses when metrics[m] < threshold, `max_<m>` when metrics[m] > threshold; a metric
    the gate names but `metrics` lacks (or a NaN) is a refusal too (`value` is NaN, reason `missing`).
    """
    for key, threshold in gate.items():
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or not metric:
            raise ConfigError(f"gate of {family!r}: key {key!r} must be min_<metric> or max_<metric>")
        threshold = float(threshold)
        value = metrics.get(metric)
        value = float("nan") if value is None else float(value)
        if math.isnan(value):
            raise _refusal(family, metric, value, threshold, "missing")
        if kind == "min" and value < threshold:
            raise _refusal(family, metric, value, threshold, "below")
        if kind == "max" and value > threshold:
            raise _refusal(family, metric, value, threshold, "above")


def set_alias(name: str, version: str | int, alias: str = CHAMPION) -> None:
    client().set_registered_model_alias(name, alias, str(version))


def get_alias_version(name: str, alias: str = CHAMPION) -> str | None:
    """The version `alias` points at, or None if the model or the alias does not exist."""
    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def resolve_version(name: str, alias_or_version: str | int = CHAMPION) -> str:
    """A version number from a version (`3`, `"3"`) or an alias (`"champion"`)."""
    text = str(alias_or_version)
    if text.isdigit():
        try:
            return str(client().get_model_version(name, text).version)
        except MlflowException:
            raise DataError(f"registered model {name!r} has no version {text}") from None
    version = get_alias_version(name, text)
    if version is None:
        raise DataError(f"registered model {name!r} has no alias {text!r} (nothing promoted yet?)")
    return version


def alias_history(name: str) -> list[dict[str, Any]]:
    """Every version of `name`, oldest first: version, aliases, tags, run_id, created (ms), status."""
    c = client()
    try:
        aliases = c.get_registered_model(name).aliases or {}
        versions = c.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(a for a, av in aliases.items() if str(av) == str(v.version)),
            "tags": dict(v.tags or {}),
            "run_id": v.run_id,
            "created": v.creation_timestamp,
            "status": v.status,
        }
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row["version"]))


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str)


def tag_version(name: str, version: str | int, tags: Mapping[str, Any]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, str(version), key, str(value))


def promote(
    family: str,
    version: str | int,
    metrics: Mapping[str, float],
    gate: Mapping[str, float],
    alias: str = CHAMPION,
) -> dict[str, Any]:
    """check_gate, then point `alias` at `version` and tag it (promoted_at, gate, metric.<m>).

    A refusal tags the version `gate=refused` (+ the reason) and re-raises; no alias moves.
    Returns {"name", "version", "alias", "previous_version", "promoted_at"}.
    """
    name = registered_name(family)
    version = resolve_version(name, version)
    try:
        check_gate(family, metrics, gate)
    except GateRefused as refusal:
        tag_version(name, version, {"gate": "refused", "gate_reason": str(refusal)[:5000]})
        raise
    previous = get_alias_version(name, alias)
    promoted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tag_version(
        name,
        version,
        {
            "gate": "passed",
            "promoted_at": promoted_at,
            "promoted_at_ms": int(time.time() * 1000),
            **{f"metric.{k}": f"{float(v):.6g}" for k, v in metrics.items() if _is_number(v)},
        },
    )
    set_alias(name, version, alias)
    return {"name": name, "version": version, "alias": alias, "previous_version": previous, "promoted_at": promoted_at}
