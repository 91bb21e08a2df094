"""Ray Tune over the family grids: one trial = one Ray Train run; MLflow parent run per grid, child per trial.

The trainable follows the pattern Ray Train V2 supports: a function trainable that builds and fits a
`TorchTrainer` whose every epoch is reported to Tune (see `poseops.tune.adapter.train_trial`), wrapped in
`tune.with_resources` taking no CPU on the head node (the Train workers reserve the trial's CPUs). A grid's state lives under
`<storage>/<name>`; running the same grid again restores it (`Tuner.restore`): finished trials keep
their results and do not run again.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from poseops.errors import ConfigError, PoseopsError
from poseops.tune import adapter
from poseops.tune.grids import Space, Trial, TuneSettings, apply_overrides, data_overrides

HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray's built-in resource of the head node


class TuneError(PoseopsError):
    """A grid or search failed in a way the user can act on (names the grid and the trial)."""


@dataclass
class GridRun:
    """What one `run_trials` call needs; plain data so that it can be logged and tested."""

    family: str
    name: str  # Tune experiment name: `<family>_<grid>` (or `<family>_search_<space>`)
    trials: list[Trial]
    base_params: dict[str, Any]  # params.yaml as read
    project_root: Path
    storage_path: str
    settings: TuneSettings = field(default_factory=TuneSettings)
    extra_overrides: dict[str, Any] = field(
        default_factory=dict
    )  # `--set`, applied after every row's
    tracking: bool = True
    trial_driver_on_head: bool = True
    description: str = ""


# ---------------------------------------------------------------- the trainable
def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: validate the trial's params, run Ray Train, report the best epoch.

    Every epoch reaches Tune as it ends (so ASHA can stop a trial); the last report
    (`done_summary` = 1) carries the best epoch, the checkpoint path, the wall time, and the selected
    checkpoint's score on the test split (`test_<metric>`, by the evaluate stage's library call):
    validation selects, test reports.
    """
    import ray.tune

    config = unpack(config)
    trial = config["trial"]
    started = time.time()
    params = adapter.validated(config["params"], source=f"trial {trial['name']}")
    run_name = adapter.safe_name(f"{config['experiment']}-{trial['name']}")
    result = adapter.train_trial(
        params,
        config["family"],
        trial["dataset_url"],
        run_name=run_name,
        storage_path=config["train_storage"],
    )
    epochs = adapter.epochs_of(result)
    metric = adapter.val_metric(config["family"])
    best = adapter.best_epoch(config["family"], epochs)
    checkpoint = result.best_checkpoints[0][0] if result.best_checkpoints else result.checkpoint
    test = {}
    if checkpoint is not None:  # validation chose it; the test split, untouched so far, scores it
        with checkpoint.as_directory() as folder:
            test = adapter.evaluate_checkpoint(
                params, config["family"], trial["dataset_url"], folder
            )
    primary = adapter.test_metric(config["family"])
    summary = {
        "done_summary": 1,
        f"best_{metric}": float(best.get(metric, float("nan"))),
        metric: float(
            best.get(metric, float("nan"))
        ),  # searchers and ASHA read the metric in every result
        f"test_{primary}": float(test.get(primary, float("nan"))),
        "test_split_rule": str(test.get("split_rule", "")),
        "best_epoch": int(best.get("epoch", -1)),
        "epochs_run": len(epochs),
        "stopped_at_plateau": int(bool(epochs and epochs[-1].get("plateau"))),
        "checkpoint_path": checkpoint.path if checkpoint is not None else "",
        "trial_seconds": round(time.time() - started, 2),
        "node_id": _node_id(),
        "worker_nodes": ",".join(adapter.worker_nodes(config["train_storage"], run_name)),
        "history": json.dumps(epochs),
    }
    ray.tune.report(summary)  # nothing returned: a returned dict would be reported a second time


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


# ---------------------------------------------------------------- MLflow: parent per grid, child per trial
class MlflowTrials(Callback):
    """A Ray Tune callback on the driver: one MLflow child run per trial under the grid's parent run,
    with the trial's overrides as params, every epoch's numbers as metrics, and the checkpoint path.

    Tune pickles its callbacks with the experiment state; the client is made again after a restore, and
    the parent and children are found again by tags, so no trial gets two runs."""

    def __init__(self, family: str, grid_name: str, parent_run_id: str, tracking_uri: str):
        self.family, self.grid_name, self.parent, self.tracking_uri = (
            family,
            grid_name,
            parent_run_id,
            tracking_uri,
        )
        self._client = None
        self.runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "runs": {}}

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        return self.client.get_run(self.parent).info.experiment_id

    def _child(self, trial) -> str:
        if trial.trial_id in self.runs:
            return self.runs[trial.trial_id]
        spec = unpack(trial.config)["trial"]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}' and tags.tune_trial = '{spec['name']}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"{self.grid_name}:{spec['name']}",
                tags={
                    "mlflow.parentRunId": self.parent,
                    "family": self.family,
                    "tune_grid": self.grid_name,
                    "tune_trial": spec["name"],
                    "tune_trial_id": trial.trial_id,
                    "row": spec["row"],
                    **{f"label.{k}": v for k, v in spec["labels"].items()},
                },
            )
            run_id = run.info.run_id
            from poseops.tracking.runs import _param_text

            params = {
                "row": spec["row"],
                "seed": spec["seed"],
                "dataset": spec["dataset_url"],
                **spec["overrides"],
            }
            for key, value in params.items():
                self.client.log_param(run_id, key, _param_text(value))
        self.runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        self._child(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._child(trial)
        if result.get("done_summary"):
            for key in ("checkpoint_path", "node_id", "worker_nodes"):
                if result.get(key):
                    self.client.set_tag(run_id, key, str(result[key]))
            numbers = {
                k: result[k] for k in ("best_epoch", "epochs_run", "trial_seconds") if k in result
            }
            numbers.update(
                {k: v for k, v in result.items() if k.startswith(("best_val_", "test_"))}
            )
            step = int(result.get("epochs_run", 0))
        else:
            numbers = {
                k: v for k, v in result.items() if k in ("train_loss", "lr") or k.startswith("val_")
            }
            step = int(result.get("epoch", result.get("training_iteration", 0)))
            if result.get("checkpoint_path"):
                self.client.set_tag(run_id, "last_checkpoint_path", str(result["checkpoint_path"]))
        for key, value in numbers.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(float(value))
            ):
                self.client.log_metric(run_id, key, float(value), step=step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.client.set_terminated(self._child(trial), "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.client.set_terminated(self._child(trial), "FAILED")


class TrialProgress(Callback):
    """One line per trial event on the driver's console, in place of Tune's status table (whose every
    refresh prints each trial's whole config: a full params.yaml here):

        [grid handmle_a2_loss] mle@s0 epoch 5: val_pck 0.345 train_loss 14.98 (2 running, 1 done, 0 waiting)
    """

    def __init__(self, grid_name: str, metric: str):
        self.grid_name, self.metric = grid_name, metric

    def _say(self, trials, trial, text: str) -> None:
        states = [t.status for t in trials]
        counts = (
            f"{states.count('RUNNING')} running, "
            f"{states.count('TERMINATED') + states.count('ERROR')} done, "
            f"{states.count('PENDING') + states.count('PAUSED')} waiting"
        )
        name = unpack(trial.config)["trial"]["name"]
        print(f"[grid {self.grid_name}] {name} {text} ({counts})", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(trials, trial, "started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("done_summary"):
            test = {
                k: v for k, v in result.items() if k.startswith("test_") and k != "test_split_rule"
            }
            numbers = {f"best_{self.metric}": result.get(f"best_{self.metric}"), **test}
            text = f"finished: best epoch {result.get('best_epoch')}, {_numbers(numbers)}"
        else:
            epoch = result.get(
                "training_iteration", "?"
            )  # Tune counts reports from 1: one per epoch
            text = f"epoch {epoch}: {_numbers({k: result.get(k) for k in (self.metric, 'train_loss')})}"
        self._say(trials, trial, text)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say(trials, trial, f"FAILED (see {trial.error_file or trial.path})")


def _numbers(values: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k} {v:.4g}"
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )


def parent_run(
    family: str, grid_name: str, storage_key: str, description: str = ""
) -> tuple[str, str]:
    """The grid's MLflow parent run: the unfinished one of this grid's Tune state (a restore), or a new one."""
    from mlflow import MlflowClient

    from poseops.tracking import store
    from poseops.tracking.runs import ensure_experiment

    uri = store.configure()
    experiment = ensure_experiment(family)
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.tune_state = '{storage_key}' and attributes.status = 'RUNNING'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id, uri
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"tune:{grid_name}",
        tags={
            "family": family,
            "tune_grid": grid_name,
            "tune_state": storage_key,
            "mlflow.note.content": description,
        },
    )
    return run.info.run_id, uri


# ---------------------------------------------------------------- preparing trials
def trial_configs(run: GridRun, data_root: Path) -> list[dict[str, Any]]:
    """Every trial's validated params and dataset: the pipeline's derived data, or (for a row that changes
    the data, e.g. label noise) a variant derived once under `data_root/<fingerprint>`.

    Validation happens here, on the driver, for every trial before any runs: a typo in a grid fails at once.
    """
    base = adapter.validated(run.base_params, source="params.yaml")
    base_print = adapter.data_fingerprint(base, run.family)
    task = adapter.get_family(run.family).task_module
    configs = []
    for trial in run.trials:
        inputs: dict[str, Any] = {}
        if trial.input_from is not None:
            if "input_tracks" not in task.Options.model_fields:
                raise ConfigError(
                    f"grid {run.name}: trial {trial.name} takes its input from family "
                    f"{trial.input_from.family!r}; the {run.family} task ({task.name}) does not read "
                    "another family's predictions"
                )
            tracks = adapter.variant_tracks(
                run.project_root, run.base_params, trial.input_from, data_root / "inputs"
            )
            inputs = {f"families.{run.family}.data.input_tracks": str(tracks)}
        raw = apply_overrides(
            run.base_params,
            {**trial.overrides, **inputs, **resource_overrides(run), **run.extra_overrides},
            source=f"grid {run.name}, trial {trial.name}",
        )
        params = adapter.validated(raw, source=f"grid {run.name}, trial {trial.name}")
        fingerprint = adapter.data_fingerprint(params, run.family)
        if fingerprint == base_print:
            dataset = adapter.project_dataset(run.project_root, run.family)
        else:
            annotations = run.project_root / "data" / "annotations" / task.annotations_file
            same_data = params.data == base.data and annotations.exists()
            dataset = adapter.derive_variant(
                params, run.family, data_root / fingerprint, annotations if same_data else None
            )
        spec = {
            **trial.as_config(),
            "overrides": {**trial.overrides, **inputs, **run.extra_overrides},
            "dataset_url": dataset,
            "data_fingerprint": fingerprint,
            "data_changed": sorted(data_overrides(trial.overrides, run.family)),
        }
        configs.append({"trial": spec, "params": raw})
    return configs


def trial_name(trial) -> str:
    """Tune's name and folder of a trial: the grid trial's name (`<row>@s<seed>`), made path-safe."""
    return (
        adapter.safe_name(unpack(trial.config)["trial"]["name"]).replace("/", "_")
        + f"_{trial.trial_id[-5:]}"
    )


def resource_overrides(run: GridRun) -> dict[str, Any]:
    """`tune.cpus_per_trial` as the family's train.cpus_per_worker (split over its workers); {} when unset."""
    if run.settings.cpus_per_trial is None:
        return {}
    workers = int(run.base_params["families"][run.family]["train"].get("num_workers", 1))
    return {f"families.{run.family}.train.cpus_per_worker": run.settings.cpus_per_trial / workers}


def scheduler_for(settings: TuneSettings, metric: str):
    if settings.scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",  # metric and mode: the TuneConfig's
        grace_period=settings.asha_grace_epochs,
        reduction_factor=settings.asha_reduction_factor,
    )


def trainable(run: GridRun):
    from ray import tune

    # The Train workers reserve the trial's CPUs; the trial driver only waits on them. On the head it takes
    # no CPU (its bundle holds a sliver of the head's built-in resource, as Ray rejects an empty one), so
    # `max_concurrent_trials` trials of `cpus_per_trial` CPUs fill a node of that many CPUs exactly; a
    # token CPU there would leave 2 - 0.02 CPUs for two 1-CPU trials, and the second would wait.
    if run.trial_driver_on_head:
        resources: dict[str, float] = {"cpu": 0, HEAD_NODE_RESOURCE: 0.001}
    else:
        resources = {"cpu": 0.01}
    return tune.with_resources(run_trial, resources)


def run_trials(run: GridRun, search: tuple[Space, str, int] | None = None):
    """Run (or resume) the grid with Ray Tune; returns the ResultGrid and the MLflow parent run id."""
    from ray import tune

    from poseops.ray_cluster import attach_ray

    metric = adapter.val_metric(run.family)
    attach_ray(include_dashboard=None)
    state = os.path.join(run.storage_path, run.name)
    parent, uri = (
        parent_run(run.family, run.name, state, run.description) if run.tracking else (None, None)
    )
    callbacks = [TrialProgress(run.name, metric)]
    if parent:
        callbacks.append(MlflowTrials(run.family, run.name, parent, uri))
    if tune.Tuner.can_restore(state):
        tuner = tune.Tuner.restore(
            state, trainable=trainable(run), resume_errored=True, restart_errored=False
        )
    else:
        common = {
            "family": run.family,
            "experiment": run.name,
            "train_storage": os.path.join(run.storage_path, run.name + "-train"),
        }
        if search is None:
            configs = trial_configs(run, Path(run.storage_path) / "data")
            # each trial's params and spec travel together: grid_search over the pairs
            param_space = {**common, "pair": tune.grid_search(configs)}
            search_alg, samples = None, 1
        else:
            param_space, search_alg, samples = search_space(run, *search, common=common)
        tuner = tune.Tuner(
            trainable(run),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
                num_samples=samples,
                max_concurrent_trials=run.settings.max_concurrent_trials,
                scheduler=scheduler_for(run.settings, metric),
                search_alg=search_alg,
                metric=metric,
                mode=adapter.metric_mode(run.family),
            ),
            run_config=tune.RunConfig(
                name=run.name,
                storage_path=run.storage_path,
                callbacks=callbacks,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=run.settings.trial_retries),
            ),
        )
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    if parent:
        from mlflow import MlflowClient

        MlflowClient().set_terminated(parent, "FAILED" if errors else "FINISHED")
    return results, parent


def search_space(run: GridRun, space: Space, algorithm: str, samples: int, common: dict[str, Any]):
    """Random or Optuna (TPE) search over a space's dimensions; every sample's params validated in the trial."""
    from ray import tune

    dims: dict[str, Any] = {}
    for key, dim in space.dimensions.items():
        if dim.kind == "choice":
            dims[key] = tune.choice(dim.values)
        elif dim.kind == "uniform":
            dims[key] = tune.uniform(dim.low, dim.high)
        elif dim.kind == "loguniform":
            dims[key] = tune.loguniform(dim.low, dim.high)
        else:
            dims[key] = tune.randint(int(dim.low), int(dim.high))
    fixed = {**space.fixed, **resource_overrides(run), **run.extra_overrides}
    adapter.validated(
        apply_overrides(run.base_params, fixed, source=f"space {run.name}"), "params.yaml"
    )
    dataset = adapter.project_dataset(run.project_root, run.family)
    adapter.dataset_card(dataset)  # the derived data must exist before any trial starts
    search_alg = None
    if algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch()
    elif algorithm != "random":
        raise ConfigError(f"--search {algorithm!r}: choose optuna or random")
    param_space = {
        **common,
        "search": dims,
        "fixed": fixed,
        "base_params": run.base_params,
        "dataset_url": dataset,
    }
    return param_space, search_alg, samples


# ---------------------------------------------------------------- reading results
def result_rows(results, family: str) -> list[dict[str, Any]]:
    """One row per finished trial: its spec, the selected checkpoint's test score (`value`, what the table
    reports) and best validation score (`val_value`, what selection uses), epochs, checkpoint, time, node."""
    metric = adapter.val_metric(family)
    primary = adapter.test_metric(family)
    rows = []
    for result in results:
        if result.error is not None or not result.metrics or not result.metrics.get("done_summary"):
            continue
        config = unpack(result.config)
        spec, m = config["trial"], result.metrics
        rows.append(
            {
                "name": spec["name"],
                "row": spec["row"],
                "seed": spec["seed"],
                **spec["labels"],
                "overrides": spec["overrides"],
                "dataset_url": spec["dataset_url"],
                "metric": primary,
                "val_metric": metric,
                "value": float(m.get(f"test_{primary}", float("nan"))),
                "val_value": m[f"best_{metric}"],
                "test_split_rule": m.get("test_split_rule", ""),
                "best_epoch": m["best_epoch"],
                "epochs_run": m["epochs_run"],
                "stopped_at_plateau": bool(m["stopped_at_plateau"]),
                "checkpoint_path": m["checkpoint_path"],
                "seconds": m["trial_seconds"],
                "node_id": m["node_id"],
                "worker_nodes": [n for n in m.get("worker_nodes", "").split(",") if n],
                "trial_id": m.get("trial_id"),
            }
        )
    return rows


def unpack(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config -> {"trial": spec, "params": raw params} for grids (a `pair`) and searches alike."""
    if "pair" in config:
        return {**config, **config["pair"]}
    if "search" in config:
        overrides = {**config["fixed"], **config["search"]}
        name = ",".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in config["search"].items())
        spec = {
            "name": name,
            "row": name,
            "seed": None,
            "labels": {},
            "overrides": overrides,
            "dataset_url": config["dataset_url"],
            "input_from": None,
        }
        return {
            **config,
            "trial": spec,
            "params": apply_overrides(config["base_params"], overrides),
        }
    return dict(config)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_row(rows: Sequence[dict[str, Any]], mode: str = "max") -> dict[str, Any]:
    """The row with the best finite validation score (`val_value`): the highest, or with mode "min" the
    lowest. The test score plays no part in the choice."""
    finite = [
        r
        for r in rows
        if isinstance(r["val_value"], (int, float)) and math.isfinite(r["val_value"])
    ]
    if not finite:
        raise TuneError("no trial finished with a finite validation metric: nothing to apply")
    return (min if mode == "min" else max)(finite, key=lambda r: r["val_value"])
