"""Render dvc.yaml from the family table: per-family stages whose code deps are the modules they run.

    poseops pipeline render           # rewrite dvc.yaml (tests/unit/test_dvc_render.py fails when it is stale)

What a stage runs: its script (`stages/<stage>.py`), the stage runner (`poseops.cli.main.run_stage`, with
the top levels of the CLI modules it passes through), its function in `poseops.pipeline`, and, for a
per-family stage, the family's task and model modules (the registries import those by name, which a
static import graph cannot see); then every poseops module those import, at module level or inside
functions (grimp's import graph). Params validation (`load_params`) is the edge: DVC tracks its values
through each stage's `params`. The code deps list a folder when every module in it is run, else files.

DVC's `foreach` cannot give one item extra deps, so families are grouped: families whose stages share a
shape (no declared inputs, the same report artefacts) form one `foreach` per stage (`derive@<family>`,
...), whose deps are the union of those families' closures; any other family gets plain stages
(`derive-<family>`, ...) with its own deps; its derive stage also depends on the `predict@<input>` output
(data/predicted/<input>) of each family it declares as an input, so retraining that family re-runs it.
Stages that are not per-family (capture, annotate, ...) are kept from the current dvc.yaml as they are,
except that a stage run as `python stages/<name>.py` over `poseops.pipeline.<name>` gets its code deps
recomputed the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

import poseops
from poseops.config import Params
from poseops.families import Family, get_family
from poseops.models import model_entry

FAMILY_STAGES = ("derive", "train", "evaluate", "promote", "report")
PREDICT = "predict"  # per-family, for the families others declare as inputs only
PACKAGE = Path(poseops.__file__).resolve().parent
HEADER = """\
# Rendered by `poseops pipeline render` from the family table (poseops.families) and params.yaml's
# families; do not edit the per-family stages here (tests/unit/test_dvc_render.py fails when this file
# is stale). Per-family stages run `stages/<stage>.py <family>`; their code deps are the poseops modules
# the stage runs (its import closure; a folder when all of it runs), so editing a module re-runs exactly
# the stages that import it. Families of one shape share a `foreach` (stage names `<stage>@<family>`);
# a family that declares inputs gets plain `<stage>-<family>` stages, its derive depending on each input's
# `predict@<input>` tracks (data/predicted/<input>). Other stages (capture, annotate, ...) are kept from this
# file as written, apart from their code deps, which are recomputed the same way: add such a stage here by
# hand, then render.
"""


# ---------------------------------------------------------------- import closures
@cache
def import_graph():
    """poseops' import graph (grimp, import-linter's engine; imported here only, for rendering and tests)."""
    import grimp

    return grimp.build_graph("poseops")


def module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "poseops":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    if base.is_dir():
        return base / "__init__.py"
    file = base.with_suffix(".py")
    return file if file.exists() else None


def imports_in(path: Path, function: str | None = None) -> set[str]:
    """poseops modules imported at the top of `path`, plus those inside `function` when given
    (`from a import b` counts `a` and `a.b`, whichever of them is a module)."""
    import ast

    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = list(tree.body)
    if function is not None:
        nodes += [
            n
            for f in tree.body
            if isinstance(f, ast.FunctionDef) and f.name == function
            for n in ast.walk(f)
        ]
    found = set()
    for node in nodes:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "poseops"
        ):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name for alias in node.names if alias.name.split(".")[0] == "poseops"
            )
    return {m for m in found if module_file(m) is not None}


def entry_modules(module: str, function: str | None) -> set[str]:
    """`module` with its top-level imports and `function`'s; imports of other `poseops.cli` modules are
    followed at their top level only (a stage runs one command, not the others)."""
    seen: set[tuple[str, str | None]] = set()
    todo, found = [(module, function)], set()
    while todo:
        name, func = todo.pop()
        if (name, func) in seen:
            continue
        seen.add((name, func))
        found.add(name)
        for imported in imports_in(module_file(name), func):
            if imported.startswith("poseops.cli"):
                todo.append((imported, None))
            else:
                found.add(imported)
    return found


ENTRY = ("poseops.cli.main", "poseops.pipeline")


def stage_modules(stage: str, family: Family | None, root: Path) -> set[str]:
    """Every poseops module stage `stage` (of `family`) runs; see the module docstring."""
    graph = import_graph()
    script = root / "stages" / f"{stage}.py"
    roots = imports_in(script) if script.exists() else set()
    roots |= entry_modules("poseops.cli.main", "run_stage") - {
        "poseops.families"
    }  # load_params: the edge
    roots |= entry_modules("poseops.pipeline", stage)
    if family is not None:
        roots |= {type(family.task_module).__module__, model_entry(family.model).build.__module__}
    roots = {m for m in roots if m in graph.modules}
    closure = set(roots)
    for module in roots:
        if not module.startswith("poseops.cli") and module not in ENTRY:
            closure |= graph.find_upstream_modules(module)
    parents = {".".join(m.split(".")[:i]) for m in closure for i in range(1, m.count(".") + 1)}
    return closure | parents


def code_deps(modules: Iterable[str], root: Path) -> list[str]:
    """Module files as dvc.yaml deps relative to root: a folder when every module under it is listed."""
    files = {f.resolve() for m in modules if (f := module_file(m)) is not None}

    def under(folder: Path) -> list[str]:
        out = []
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and (entry / "__init__.py").exists():
                inside = [f for f in entry.rglob("*.py") if "__pycache__" not in f.parts]
                if inside and all(f.resolve() in files for f in inside):
                    out.append(entry)
                else:
                    out += under(entry)
            elif entry.suffix == ".py" and entry.resolve() in files:
                out.append(entry)
        return out

    return [
        str(p.resolve().relative_to(root.resolve()))
        for p in under(PACKAGE)
        if p.resolve().is_relative_to(root.resolve())
    ]


# ---------------------------------------------------------------- stage templates
def family_stage(stage: str, key: str, family: Family) -> dict[str, Any]:
    """One per-family stage with `key` for the family's name (`${key}` in a foreach, else the name);
    code deps are added by the caller."""
    task = family.task_module
    if stage == "derive":
        return {
            "deps": [f"data/annotations/{task.annotations_file}"],
            "params": ["data.split", "data.weights", f"families.{key}.data"],
            "outs": [f"data/derived/{key}"],
        }
    if stage == "train":
        return {
            "deps": [f"data/derived/{key}"],
            "params": [f"families.{key}.model", f"families.{key}.train"],
            "outs": [f"models/{key}"],
            "plots": [
                {f"plots/{key}/train_history.json": {"cache": False, "x": "epoch"}},
                {f"plots/{key}/train_curves.png": {"cache": False}},
            ],
        }
    if stage == "evaluate":
        return {
            "deps": [f"models/{key}", f"data/derived/{key}"],
            "params": [f"families.{key}.evaluate"],
            "metrics": [
                {f"metrics/{key}/{a.name}": {"cache": False}}
                for a in task.artefacts
                if a.role == "metrics"
            ],
            "plots": [
                {f"metrics/{key}/{a.name}": {"cache": False, **a.plot}}
                for a in task.artefacts
                if a.role == "plot"
            ],
        }
    if stage == "promote":
        return {
            "deps": [f"models/{key}", f"metrics/{key}/metrics.json"],
            "params": [f"families.{key}.gate"],
            "outs": [{f"metrics/{key}/promotion.json": {"cache": False}}],
        }
    if stage == "report":
        # not reports/grids: a dep on it would make grids/dvc.yaml's Tune stages upstream of `dvc repro`;
        # after a grid runs, `dvc repro -f report@<family>` takes its table in
        return {
            "deps": [
                "platform/poseops/papers",
                f"metrics/{key}/metrics.json",
                f"plots/{key}/train_history.json",
            ],
            "params": ["profile", f"families.{key}.model"],
            "outs": [{f"reports/{key}.md": {"cache": False}}, {f"reports/{key}": {"cache": False}}],
        }
    raise ValueError(f"not a per-family stage: {stage}")


def predict_stage(key: str) -> dict[str, Any]:
    """predict@<family> of a family another declares as its input: the trained model's 2D tracks of the
    long sequences (poseops.predict), which the consuming family's derive stage depends on."""
    return {
        "deps": [f"models/{key}", "data/raw/synthetic/sequences"],
        "params": [f"families.{key}.predict"],
        "outs": [f"data/predicted/{key}"],
    }


def with_code(stage: str, body: dict[str, Any], key: str, code: list[str]) -> dict[str, Any]:
    return {
        "cmd": f"python stages/{stage}.py {key}",
        "deps": [f"stages/{stage}.py", *code, *body.pop("deps")],
        **body,
    }


def shape(family: Family) -> tuple:
    task = family.task_module
    return (family.inputs, task.artefacts, task.annotations_file)


def render(params: Params, current: Mapping[str, Any] | None, root: Path) -> str:
    """dvc.yaml's text for `params`' families (each in the family table), keeping `current`'s other stages."""
    families = [get_family(name) for name in params.families]
    plain = [f for f in families if not f.inputs]  # the first family without inputs sets the shape
    shared = [f for f in plain if shape(f) == shape(plain[0])] if plain else []
    alone = [f for f in families if f not in shared]

    inputs = [get_family(name) for name in sorted({n for f in families for n in f.inputs})]
    stages: dict[str, Any] = {}
    generated = (
        set(FAMILY_STAGES) | {PREDICT} | {f"{s}-{f.name}" for s in FAMILY_STAGES for f in families}
    )
    for name, spec in ((current or {}).get("stages") or {}).items():
        if name in generated or any(name.startswith(f"{s}-") for s in FAMILY_STAGES):
            continue
        stages[name] = static_stage(name, spec, root)
    for stage in FAMILY_STAGES:
        if shared:
            code = code_deps(set().union(*(stage_modules(stage, f, root) for f in shared)), root)
            do = with_code(stage, family_stage(stage, "${key}", shared[0]), "${key}", code)
            stages[stage] = {"foreach": {f.name: f.task for f in shared}, "do": do}
    if inputs:
        code = code_deps(set().union(*(stage_modules(PREDICT, f, root) for f in inputs)), root)
        do = with_code(PREDICT, predict_stage("${key}"), "${key}", code)
        stages[PREDICT] = {"foreach": {f.name: f.task for f in inputs}, "do": do}
    for family in alone:
        for stage in FAMILY_STAGES:
            body = family_stage(stage, family.name, family)
            if stage == "derive":
                body["deps"] += [f"data/predicted/{name}" for name in family.inputs]
            stages[f"{stage}-{family.name}"] = with_code(
                stage, body, family.name, code_deps(stage_modules(stage, family, root), root)
            )
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)


def static_stage(name: str, spec: dict[str, Any], root: Path) -> dict[str, Any]:
    """A stage kept from dvc.yaml; its poseops code deps recomputed when it runs a pipeline function."""
    import poseops.pipeline as pipeline_module

    cmd = spec.get("cmd")
    if cmd != f"python stages/{name}.py" or not callable(getattr(pipeline_module, name, None)):
        return spec
    kept = [d for d in spec.get("deps", []) if not str(d).startswith("platform/")]
    code = code_deps(stage_modules(name, None, root), root)
    script = [d for d in kept if d == f"stages/{name}.py"]
    rest = [d for d in kept if d != f"stages/{name}.py"]
    return {**spec, "deps": [*script, *code, *rest]}


def render_file(root: Path, params: Params) -> str:
    """dvc.yaml's rendered text for the project at root (its current dvc.yaml's other stages kept)."""
    path = root / "dvc.yaml"
    current = yaml.safe_load(path.read_text()) if path.exists() else None
    return render(params, current, root)
