"""The MLflow model registry for poseops: gates, aliases, promotion history.

Registered models are named `poseops-<family>`; the serving alias is `champion`. A version is
registered first (see `poseops.packaging.log_and_register`) and only `promote` moves the alias,
after `check_gate` passed: a refused gate leaves every alias where it was.

A gate is a flat mapping `{"min_<metric>": threshold, "max_<metric>": threshold}`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
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
    `gate`: a mapping of thresholds, or `config.GateParams` (its thresholds).
    """
    thresholds = gate.thresholds() if hasattr(gate, "thresholds") else gate
    for key, threshold in thresholds.items():
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or not metric:
            raise ConfigError(
                f"gate of {family!r}: key {key!r} must be min_<metric> or max_<metric>"
            )
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


def find_version_by_weights(name: str, weights_sha256: str):
    """The oldest registered version of `name` whose `weights_sha256` tag equals this one, or None."""
    try:
        versions = client().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    same = [v for v in versions if (v.tags or {}).get("weights_sha256") == weights_sha256]
    return min(same, key=lambda v: int(v.version)) if same else None


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


# ---------------------------------------------------------------- evidence, history, promotion
EVIDENCE_KEYS = ("dataset_checksum", "split", "weights_sha256")


def record_evaluation(
    family: str,
    version: str | int,
    metrics: Mapping[str, Any],
    dataset_checksum: str | None,
    split: str | None = None,
) -> None:
    """Tag a version with the numbers it was judged on (`metric.<m>`) and the evaluation data's content
    checksum and split, which a later challenger must share to be compared with it."""
    numbers = {f"metric.{k}": f"{float(v):.10g}" for k, v in metrics.items() if _is_number(v)}
    extra = {"dataset_checksum": dataset_checksum or "", "split": split or ""}
    tag_version(registered_name(family), version, {**numbers, **extra})


def version_evidence(name: str, version: str | int) -> dict[str, Any]:
    """{"metrics": {m: float}, "dataset_checksum", "split", "weights_sha256"} from a version's tags."""
    tags = dict(client().get_model_version(name, str(version)).tags or {})
    metrics = {}
    for key, text in tags.items():
        if key.startswith("metric."):
            try:
                metrics[key[len("metric.") :]] = float(text)
            except ValueError:
                continue
    return {"metrics": metrics, **{k: tags.get(k) or None for k in EVIDENCE_KEYS}}


def who() -> str:
    """Who acts on the registry: `$POSEOPS_USER`, else the login name."""
    import getpass

    return os.environ.get("POSEOPS_USER") or getpass.getuser()


def history(family: str) -> list[dict[str, Any]]:
    """Every promotion, refusal and rollback of `family`, oldest first: {"event", "version", "previous",
    "at", "by", "why", "metrics"}. Kept as tags of the registered model, so it lives wherever the
    registry does (a sqlite file or an `mlflow server` on PostgreSQL) and survives restarts."""
    try:
        tags = client().get_registered_model(registered_name(family)).tags or {}
    except MlflowException:
        return []
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith("history."))]


def _record(family: str, event: dict[str, Any]) -> dict[str, Any]:
    """Append an event to the family's history (registered-model tag) and to its version's description."""
    name, c = registered_name(family), client()
    event = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": who(), **event}
    count = len(history(family))
    c.set_registered_model_tag(
        name, f"history.{count:05d}", json.dumps(event, sort_keys=True)[:4900]
    )
    line = f"{event['at']} {event['event']} by {event['by']}: {event.get('why') or ''}".rstrip(": ")
    version = c.get_model_version(name, str(event["version"]))
    c.update_model_version(
        name,
        str(event["version"]),
        description="\n".join(filter(None, [version.description, line])),
    )
    return event


class ChampionNotBeaten(GateRefused):
    """A challenger that passed the absolute gates but does not beat the champion by `min_delta` on the
    same evaluation data (or was evaluated on other data, so the two cannot be compared)."""

    def __init__(self, family: str, metric: str, value: float, threshold: float, message: str = ""):
        super().__init__(family, metric, value, threshold)
        self.reason = "champion"
        self.args = (message or str(self),)

    def __reduce__(self):
        return (type(self), (self.family, self.metric, self.value, self.threshold, str(self)))


def compare_with_champion(
    family: str,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any],
    metric: str,
    min_delta: float,
    versions: tuple[str, str],
    mode: str = "max",
) -> None:
    """Raise ChampionNotBeaten unless the challenger's `metric` is at least the champion's + min_delta
    (mode "min", lower is better: at most the champion's - min_delta) on the same evaluation data
    (content checksum and split). `versions`: (challenger, champion)."""
    new, old = versions
    for key in ("dataset_checksum", "split"):
        if challenger.get(key) != champion.get(key):
            raise ChampionNotBeaten(
                family,
                metric,
                float("nan"),
                float("nan"),
                f"promotion of {family!r} v{new} refused: it was evaluated on other data than champion v{old} "
                f"({key} {challenger.get(key)!s:.16} vs {champion.get(key)!s:.16}); evaluate both on the same data",
            )
    if metric not in champion["metrics"] or metric not in challenger["metrics"]:
        raise ChampionNotBeaten(
            family,
            metric,
            float("nan"),
            float("nan"),
            f"promotion of {family!r} v{new} refused: {metric} is not recorded for "
            f"{'champion v' + old if metric not in champion['metrics'] else 'v' + new}",
        )
    value, best = float(challenger["metrics"][metric]), float(champion["metrics"][metric])
    lower = mode == "min"
    needed = best - min_delta if lower else best + min_delta
    if (value > needed) if lower else (value < needed):
        raise ChampionNotBeaten(
            family,
            metric,
            value,
            needed,
            f"promotion of {family!r} v{new} refused: {metric} = {value:.4f} does not beat champion v{old}'s "
            f"{best:.4f} by min_delta {min_delta:g} (needs {'<=' if lower else '>='} {needed:.4f})",
        )


def promote(
    family: str,
    version: str | int,
    metrics: Mapping[str, float] | None = None,
    gate: Any = None,
    alias: str = CHAMPION,
    *,
    primary_metric: str | None = None,
    metric_mode: str = "max",
    why: str = "",
) -> dict[str, Any]:
    """Move `alias` to `version` if it passes the gate; raise GateRefused (no alias moves) otherwise.

    The gate: the absolute thresholds (`min_<m>`/`max_<m>`) on `metrics` (default: the version's
    recorded `metric.*` tags), then, when `primary_metric` is given and another version holds the alias,
    the challenger must beat it by `gate.min_delta` on the same evaluation data (`record_evaluation`).
    A version whose weights equal the champion's is the champion already: no refusal, nothing moves.
    Every outcome is recorded in `history(family)`, with who, when and why.

    Returns {"name", "version", "alias", "previous_version", "promoted_at", "changed"}.
    """
    name = registered_name(family)
    version = resolve_version(name, version)
    evidence = version_evidence(name, version)
    metrics = dict(metrics) if metrics is not None else evidence["metrics"]
    thresholds = gate if gate is not None else {}
    min_delta = float(getattr(gate, "min_delta", 0.0))
    previous = get_alias_version(name, alias)
    numbers = {k: float(v) for k, v in metrics.items() if _is_number(v)}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if previous is not None and (
        previous == version
        or (
            evidence["weights_sha256"]
            and evidence["weights_sha256"] == version_evidence(name, previous)["weights_sha256"]
        )
    ):
        return {
            "name": name,
            "version": previous,
            "alias": alias,
            "previous_version": previous,
            "promoted_at": None,
            "changed": False,
        }
    try:
        check_gate(family, metrics, thresholds)
        if previous is not None and primary_metric:
            compare_with_champion(
                family,
                {**evidence, "metrics": {**evidence["metrics"], **numbers}},
                version_evidence(name, previous),
                primary_metric,
                min_delta,
                (version, previous),
                metric_mode,
            )
    except GateRefused as refusal:
        tag_version(name, version, {"gate": "refused", "gate_reason": str(refusal)[:5000]})
        _record(
            family,
            {
                "event": "refused",
                "version": version,
                "previous": previous,
                "why": str(refusal),
                "metrics": numbers,
            },
        )
        raise
    tag_version(
        name,
        version,
        {
            "gate": "passed",
            "promoted_at": now,
            "promoted_at_ms": int(time.time() * 1000),
            **{f"metric.{k}": f"{v:.10g}" for k, v in numbers.items()},
        },
    )
    set_alias(name, version, alias)
    _record(
        family,
        {
            "event": "promoted",
            "version": version,
            "previous": previous,
            "alias": alias,
            "why": why or "passed the gate",
            "metrics": numbers,
        },
    )
    return {
        "name": name,
        "version": version,
        "alias": alias,
        "previous_version": previous,
        "promoted_at": now,
        "changed": True,
    }


def rollback(family: str, why: str = "", alias: str = CHAMPION) -> dict[str, Any]:
    """Point `alias` back at the version that held it before the current one (following promotions and
    earlier rollbacks in the history), and record why. DataError when there is nothing to go back to."""
    name = registered_name(family)
    current = get_alias_version(name, alias)
    if current is None:
        raise DataError(f"registered model {name!r} has no alias {alias!r}: nothing to roll back")
    holders: list[str] = []  # the alias's holders, most recent last
    for event in history(family):
        if event.get("alias", alias) != alias:
            continue
        if event["event"] == "promoted":
            holders.append(str(event["version"]))
        elif event["event"] == "rollback" and holders:
            holders.pop()
    while holders and holders[-1] == current:
        holders.pop()
    if not holders:
        raise DataError(
            f"registered model {name!r}: v{current} is the first {alias}; there is no earlier one"
        )
    target = holders[-1]
    set_alias(name, target, alias)
    _record(
        family,
        {
            "event": "rollback",
            "version": target,
            "previous": current,
            "alias": alias,
            "why": why or "rolled back",
        },
    )
    return {"name": name, "version": target, "alias": alias, "previous_version": current}
