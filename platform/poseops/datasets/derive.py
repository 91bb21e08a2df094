"""Derive a family's dataset on Ray (or in-process): plan items, split them, cut them into chunks that Ray
tasks turn into Parquet shards, then publish `card.json` last.

    labels --plan(rows)--> items (one per future row; each knows its split unit)
           --split + cap--> chunks (<= chunk_samples items, one split each)
           --Ray tasks--> <out>/<split>/part-CCCCC-NNNN.parquet (each task writes its own shards)
           --driver--> <out>/card.json (counts, splits, shard list with checksums, skeleton, source parameters)

The same chunks give the same shards whichever executor runs them, so a local run and a cluster run
publish identical datasets. Readers list shards from the card only: files of an unfinished or killed
run are never read, and a re-run clears the folder first.

Executors: "ray" shares the chunks across Ray tasks (one CPU each; OpenCV and BLAS held to one thread),
attached to $RAY_ADDRESS when set, else to a private local instance. "local" runs them in this process
(the only choice for memory:// URLs, which live inside one process). "auto" picks Ray when an instance is
already attached or $RAY_ADDRESS is set or the job is large, else local.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from poseops.annotations.internal import load_annotations
from poseops.annotations.mix import source_mix, weigh_sources
from poseops.config import FamilyData, SplitParams
from poseops.errors import DataError
from poseops.ray_cluster import attach_ray
from poseops.skeletons import Skeleton
from poseops.storage import clear, exists, join, sha256_bytes, write_json_atomic

Executor = Literal["auto", "ray", "local"]
CHUNK_SAMPLES = 256  # items per Ray task
AUTO_RAY_MIN_SAMPLES = (
    2000  # "auto" starts a private Ray instance only for jobs at least this large
)
FORWARDED_ENV_PREFIXES = (
    "FSSPEC_",
    "AWS_ENDPOINT_URL",
)  # store settings (never credentials) sent to cluster tasks
FORWARDED_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")


@dataclass(frozen=True)
class RowPlan:
    """How one kind of row is planned and written (each `poseops.tasks` module declares its own).

    plan(labels, skeleton, options) -> items: dicts with "unit" and "sequence_unit" (the split unit by
        subject and by sequence, see shards.unit_of) and "sample_id", plus whatever `rows` needs (JSON-like, shipped to Ray tasks).
    rows(items, context) -> shard rows of `schema`, one per item, in item order.
    card(items, context) -> extra card fields (e.g. max_people).
    """

    kind: str
    schema: pa.Schema
    plan: Callable[[dict, Skeleton, dict], list[dict]]
    rows: Callable[[list[dict], RowContext], Iterator[dict]]
    card: Callable[[list[dict], RowContext], dict] | None = None


@dataclass(frozen=True)
class RowContext:
    """What a task needs besides its items (picklable)."""

    annotations_path: str
    num_keypoints: int
    shard_margin: float
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    split: str
    index: int
    items: list[dict]


# ---------------------------------------------------------------- planning
def assign_splits(
    items: list[dict], split: SplitParams, max_samples: int | None
) -> dict[str, list[dict]]:
    """Items per split ('train', 'val', 'test') by their unit (a unit never spans splits), capped at
    max_samples each with every source keeping its share (see cap_by_source). An item's unit is
    `shards.unit_of` of its image under `split.by` (plans record both keys: "unit" by subject,
    "sequence_unit" by sequence)."""
    return cap_by_source(split_items(items, split), max_samples)[0]


def split_items(items: list[dict], split: SplitParams) -> dict[str, list[dict]]:
    """Items per split by their unit, uncapped, in the items' order."""
    from poseops.datasets.shards import SPLITS, split_keys

    units = [unit_key(item, split) for item in items]
    assignment = split_keys(units, split)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for item, unit in zip(items, units, strict=True):
        out[assignment[unit]].append(item)
    return out


def source_quotas(counts: Mapping[str, int], cap: int) -> dict[str, int]:
    """How many of each source's `counts` items a split capped at `cap` keeps: the same share of every
    source (largest remainder, ties by name), and at least one of each when the cap has room for one
    per source, so a small source appended after a large one is never cut to nothing."""
    import math

    total = sum(counts.values())
    if total <= cap:
        return dict(counts)
    names = sorted(counts)
    exact = {s: cap * counts[s] / total for s in names}
    quota = {s: math.floor(exact[s]) for s in names}
    if cap >= len(names):
        quota = {s: max(quota[s], min(1, counts[s])) for s in names}
    by_remainder = sorted(names, key=lambda s: (-(exact[s] - math.floor(exact[s])), s))
    while sum(quota.values()) < cap:
        s = next(s for s in by_remainder if quota[s] < counts[s])
        quota[s] += 1
        by_remainder.remove(s)
        by_remainder.append(s)
    while sum(quota.values()) > cap:  # the one-each floor overshot: the largest quotas give way
        s = max(names, key=lambda s: (quota[s], s))
        quota[s] -= 1
    return quota


def cap_by_source(
    per_split: Mapping[str, list[dict]], max_samples: int | None
) -> tuple[dict[str, list[dict]], dict[str, dict[str, dict[str, int]]]]:
    """Each split capped at max_samples items, each source keeping its quota (source_quotas): the first
    items of that source in the split's order, the order kept. Returns (capped splits, tally): tally is
    split -> source -> {"kept": k, "dropped": d}, every source present, dropped 0 when nothing was cut."""
    from poseops.annotations.mix import item_source

    capped, tally = {}, {}
    for name, items in per_split.items():
        sources = [item_source(item) for item in items]
        counts = {s: sources.count(s) for s in sorted(set(sources))}
        quota = dict(counts) if max_samples is None else source_quotas(counts, max_samples)
        taken = dict.fromkeys(counts, 0)
        kept = []
        for item, source in zip(items, sources, strict=True):
            if taken[source] < quota[source]:
                taken[source] += 1
                kept.append(item)
        capped[name] = kept
        tally[name] = {s: {"kept": taken[s], "dropped": counts[s] - taken[s]} for s in counts}
    return capped, tally


def cap_lines(card: Mapping[str, Any]) -> list[str]:
    """Printable lines of a card's cap (`source.cap`): per split, each source's kept and dropped samples;
    none when the family sets no max_samples."""
    cap = card.get("source", {}).get("data", {}).get("max_samples")
    if cap is None:
        return []
    lines = []
    for name, sources in card.get("source", {}).get("cap", {}).items():
        kept = "; ".join(
            f"{s or '(no source)'} {n['kept']} kept, {n['dropped']} dropped"
            for s, n in sources.items()
        )
        lines.append(f"max_samples {cap} per split: {name}: {kept or 'no samples'}")
    return lines


def unit_key(item: dict, split: SplitParams) -> str:
    """The item's split unit under `split.by` (see assign_splits)."""
    return item.get("unit" if split.by == "subject" else "sequence_unit", item["unit"])


def make_chunks(per_split: Mapping[str, list[dict]], chunk_samples: int) -> list[Chunk]:
    """Consecutive runs of at most chunk_samples items of one split (consecutive items share videos)."""
    chunks = []
    for name, items in per_split.items():
        for index, start in enumerate(range(0, len(items), chunk_samples)):
            chunks.append(Chunk(name, index, items[start : start + chunk_samples]))
    return chunks


# ---------------------------------------------------------------- one task
def write_chunk(
    rows: RowPlan,
    chunk: Chunk,
    context: RowContext,
    out_url: str,
    max_shard_bytes: int,
    one_thread: bool = True,
) -> dict[str, Any]:
    """Write one chunk's rows as `<out>/<split>/part-<chunk>-NNNN.parquet`; returns its shard list.

    one_thread: hold OpenCV and BLAS to one thread (inside Ray tasks, where the CPUs are the tasks).
    """
    import contextlib

    import cv2

    from poseops.datasets.shards import ShardWriter

    spec = rows
    limit = contextlib.nullcontext()
    previous = cv2.getNumThreads()
    if one_thread:
        cv2.setNumThreads(1)
        limit = blas_one_thread()
    try:
        with limit:
            writer = ShardWriter(
                join(out_url, chunk.split),
                max_shard_bytes,
                spec.schema,
                prefix=f"part-{chunk.index:05d}",
            )
            rows = 0
            for row in spec.rows(chunk.items, context):
                writer.add(row)
                rows += 1
            shards = writer.close()
    finally:
        if one_thread:
            cv2.setNumThreads(previous)
    return {"split": chunk.split, "index": chunk.index, "rows": rows, "shards": shards}


def blas_one_thread():
    """A context holding BLAS/OpenMP pools to one thread (threadpoolctl); Ray already sets OMP_NUM_THREADS
    to a task's CPUs, so without threadpoolctl this is a no-op."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


# ---------------------------------------------------------------- executors
def forwarded_env() -> dict[str, str]:
    """Object-store settings of this process for tasks on a cluster attached through $RAY_ADDRESS (endpoints,
    region; never credentials). A private local instance inherits this process's environment already."""
    if not os.environ.get("RAY_ADDRESS"):
        return {}
    return {
        k: v
        for k, v in os.environ.items()
        if k in FORWARDED_ENV or any(k.startswith(prefix) for prefix in FORWARDED_ENV_PREFIXES)
    }


def run_on_ray(
    rows: RowPlan, chunks: list[Chunk], context: RowContext, out_url: str, max_shard_bytes: int
) -> list[dict]:
    ray = attach_ray()
    task = ray.remote(num_cpus=1, max_retries=1)(write_chunk)
    env = forwarded_env()
    if env:
        task = task.options(runtime_env={"env_vars": env})
    shared = ray.put(context)
    refs = [task.remote(rows, chunk, shared, out_url, max_shard_bytes) for chunk in chunks]
    try:
        return ray.get(refs)
    except BaseException as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        if isinstance(exc, ray.exceptions.RayTaskError):
            raise exc.as_instanceof_cause() from None
        raise


def run_locally(
    rows: RowPlan, chunks: list[Chunk], context: RowContext, out_url: str, max_shard_bytes: int
) -> list[dict]:
    return [
        write_chunk(rows, chunk, context, out_url, max_shard_bytes, one_thread=False)
        for chunk in chunks
    ]


def choose_executor(executor: Executor, out_url: str, num_items: int) -> str:
    """Resolve "auto" and refuse memory:// on Ray (see module doc)."""
    in_memory = str(out_url).startswith("memory://")
    if executor == "auto":
        import sys

        attached = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        wanted = (
            attached or bool(os.environ.get("RAY_ADDRESS")) or num_items >= AUTO_RAY_MIN_SAMPLES
        )
        return "local" if in_memory or not wanted else "ray"
    if executor == "ray" and in_memory:
        raise DataError(
            f"{out_url}: memory:// lives inside one process, so Ray tasks cannot write it; derive to a local "
            "path or s3:// (memory:// is for in-process tests: executor='local')"
        )
    if executor not in ("ray", "local"):
        raise DataError(f"derive: executor {executor!r} is not one of auto, ray, local")
    return executor


# ---------------------------------------------------------------- the entry point
def derive_dataset(
    rows: RowPlan,
    annotations_path: str | Path,
    out_url: str,
    data: FamilyData,
    split: SplitParams,
    skeleton: str | Skeleton = "hand21",
    repo_root: str | Path | None = None,
    executor: Executor = "auto",
    chunk_samples: int = CHUNK_SAMPLES,
    options: Mapping[str, Any] | None = None,
    source_weights: Mapping[str, float] | None = None,
    run_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write `<out>/<split>/part-*.parquet` and then `<out>/card.json`; returns the card.

    rows: the task's row plan (`poseops.tasks.get_task(name).rows`); data: the task's options.
    options: settings over `data.derive_options()` (from params.yaml), e.g. crop_format, window, min_views.
    source_weights: image source -> share of its training samples kept (params.yaml `data.weights`; see
        poseops.annotations.mix); the card's `source.mix` counts each split's samples per source, and
        `source.cap` what `data.max_samples` kept and dropped of each (cap_by_source; cap_lines prints it).
    Any earlier dataset at out_url is unpublished (card first) and replaced. On failure nothing
    readable is left behind. repo_root is accepted for the pipeline's calls and unused.
    The card is a pure function of the inputs (same labels and options, same bytes on any executor);
    run facts (executor, task count, wall time) go to `run_log`, never into the card.
    """
    from poseops.datasets.shards import resolve_skeleton

    spec, kind = rows, rows.kind
    annotations_path = Path(annotations_path)
    labels = load_annotations(annotations_path)
    sk = resolve_skeleton(skeleton, labels, str(annotations_path))
    options = {**data.derive_options(), **(options or {})}
    items = spec.plan(labels, sk, options)
    if not items:
        raise DataError(
            f"{annotations_path}: nothing to derive a {kind} dataset from "
            f"(no annotation with {sk.num_keypoints} keypoints ({sk.name}) and what {kind} needs)"
        )
    per_split, cap = cap_by_source(split_items(items, split), data.max_samples)
    per_split["train"] = weigh_sources(
        per_split["train"], source_weights or {}, labels, split.seed, str(annotations_path)
    )
    chunks = make_chunks(per_split, chunk_samples)
    context = RowContext(
        str(annotations_path.resolve()), sk.num_keypoints, data.shard_margin, options
    )
    chosen = choose_executor(executor, out_url, len(items))

    card_url = join(out_url, "card.json")
    if exists(card_url):
        clear(card_url)
    clear(out_url)
    started = time.time()
    try:
        run = run_on_ray if chosen == "ray" else run_locally
        results = run(spec, chunks, context, out_url, data.max_shard_bytes)
        card = make_card(
            kind, sk, per_split, results, spec, context, annotations_path, data, split, cap
        )
        write_json_atomic(card_url, card)
    except BaseException:
        clear(out_url)
        raise
    if run_log is not None:
        run_log(
            {
                "out": out_url,
                "kind": kind,
                "executor": chosen,
                "tasks": len(chunks),
                "seconds": round(time.time() - started, 2),
                "dataset_checksum": dataset_checksum(card),
            }
        )
    return card


def dataset_checksum(card: Mapping[str, Any]) -> str:
    """SHA-256 of a derived dataset's content: kind, skeleton, schema, source options and the hash of the
    records it takes (`records_sha256`), split counts, and every shard's name, rows and SHA-256, in card order.

    Two datasets with the same checksum hold the same rows; evaluation, reports and the registry's
    champion-vs-challenger gate compare "the same evaluation data" by it. Card fields that are not
    content (none are written now; older cards held `seconds` and `executor`) do not enter it.
    """
    content = {
        "kind": card.get("kind"),
        "skeleton": card.get("skeleton"),
        "format": card.get("format"),
        "source": card.get("source"),
        "counts": card.get("counts"),
        "shards": {
            split: [[s["file"], s["rows"], s["sha256"]] for s in body.get("shards", [])]
            for split, body in sorted(card.get("splits", {}).items())
        },
    }
    return sha256_bytes(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())


def records_sha256(per_split: Mapping[str, list[dict]]) -> str:
    """SHA-256 of the labels' records a dataset takes: its planned items (each holding the image and
    annotation records its row is cut from) per split, in split order.

    Not the labels file's hash: one labels file feeds every family, and a record no item of this
    dataset holds (another family's hands, say) must leave this card, and so the family's derived
    output and what depends on it downstream, unchanged.
    """
    return sha256_bytes(
        json.dumps(per_split, sort_keys=True, separators=(",", ":"), default=_plain).encode()
    )


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays in a plug-in's planned items as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise DataError(
        f"derive: a planned item holds a {type(value).__name__}; items must be JSON-like "
        "(see RowPlan.plan)"
    )


def make_card(
    kind: str,
    sk: Skeleton,
    per_split: Mapping[str, list[dict]],
    results: list[dict],
    spec: RowPlan,
    context: RowContext,
    annotations_path: Path,
    data: FamilyData,
    split: SplitParams,
    cap: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    shards: dict[str, list[dict]] = defaultdict(list)
    for result in sorted(results, key=lambda r: (r["split"], r["index"])):
        shards[result["split"]] += [
            {
                "file": Path(s["file"]).name,
                "rows": s["rows"],
                "row_groups": s["row_groups"],
                "sha256": s["sha256"],
            }
            for s in result["shards"]
        ]
    all_items = [item for items in per_split.values() for item in items]
    sources = {item.get("source") or item.get("image", {}).get("source") for item in all_items}
    card = {
        "kind": kind,
        "skeleton": {
            "name": sk.name,
            "keypoints": list(sk.keypoints),
            "edges": [list(e) for e in sk.edges],
            "flip_pairs": [list(p) for p in sk.flip_pairs],
        },
        "splits": {
            name: {
                "samples": len(items),
                "units": sorted({unit_key(i, split) for i in items}),
                "shards": shards.get(name, []),
            }
            for name, items in per_split.items()
        },
        "counts": {name: len(items) for name, items in per_split.items()},
        "source": {
            "mix": {name: source_mix(items) for name, items in per_split.items()},
            "cap": dict(cap or {}),
            "annotations": annotations_path.name,
            "records_sha256": records_sha256(per_split),
            "kind": "synthetic"
            if sources == {"synthetic"}
            else ("mixed" if "synthetic" in sources else "real"),
            "data": data.model_dump(mode="json"),
            "split": split.model_dump(mode="json"),
            "options": dict(context.options),
        },
        "format": {
            "schema": [f.name for f in spec.schema],
            "max_shard_bytes": data.max_shard_bytes,
        },
    }
    if spec.card is not None:
        card.update(spec.card(all_items, context))
    return card
