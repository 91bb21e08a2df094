"""The expert/trainee study on synthetic performances, beside the paper's figures (the `assess` stage).

    write_study(AssessParams(), "reports")  ->  reports/assessment.{json,png,md}

Per task, every synthetic expert and trainee (`poseops.assess.synthetic`) is scored against the task's
reference; the report puts the similarity and grade of each performer beside Table 7's similarity of
ordinary operators and Table 9's similarity bands of Zhang, He, Wu (2025), "VMHPE: Human Pose
Estimation for Virtual Maintenance Tasks", and says whether the separation goes the paper's way
(experts at the professional level, ordinary operators below it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from poseops.assess.core import assess
from poseops.assess.grades import GRADES, TABLE7, TABLE7_SOURCE, TABLE8, TABLE9, TABLE9_SOURCE
from poseops.assess.synthetic import TASK_ORDER, performances
from poseops.config import AssessParams
from poseops.storage import write_bytes_atomic

BANDS = ((">=90", 90.0, 101.0), ("80-89", 80.0, 90.0), ("70-79", 70.0, 80.0), ("<70", -1.0, 70.0))


def run_study(settings: AssessParams) -> dict[str, Any]:
    """Scores of every synthetic performer and the per-task summary, as a JSON-able dict."""
    synthetic = settings.synthetic
    found = performances(
        seed=synthetic.seed,
        performers=synthetic.performers,
        trainee_offset_deg=synthetic.trainee_offset_deg,
        label_noise_px=synthetic.label_noise_px,
    )
    options = settings.scoring.model_dump()
    sigma = options.pop("sigma_deg")
    rows, tasks = [], {}
    for task in TASK_ORDER:
        reference = next(p for p in found if p.task == task and p.role == "reference")
        scored: dict[str, list[float]] = {"expert": [], "trainee": []}
        deltas: dict[str, list[float]] = {
            "expert": [],
            "trainee": [],
        }  # weighted mean chain delta in the image
        for p in found:
            if p.task != task or p.role == "reference":
                continue
            result = assess(reference.keypoints, p.keypoints, task, sigma_deg=sigma, **options)
            scored[p.role].append(result.similarity)
            deltas[p.role].append(sum(c.weight * c.mean_delta_deg for c in result.chains))
            rows.append(
                {
                    "task": task,
                    "role": p.role,
                    "performer": p.index,
                    "frames": len(p.keypoints),
                    "offset_deg": p.offset_deg,
                    "similarity": round(result.similarity, 2),
                    "grade": result.grade,
                    "grade_by_similarity": result.grade_by_similarity,
                    "fluctuation_deg": round(result.fluctuation_deg, 2),
                    "mirrored": result.mirrored,
                }
            )
        expert, trainee = np.array(scored["expert"]), np.array(scored["trainee"])
        paper = TABLE7[task]
        tasks[task] = {
            "chain": paper.chain,
            "trainee_offset_deg": next(
                p.offset_deg for p in found if p.task == task and p.role == "trainee"
            ),
            "expert_mean": round(float(expert.mean()), 2),
            "expert_sd": round(float(expert.std()), 2),
            "trainee_mean": round(float(trainee.mean()), 2),
            "trainee_sd": round(float(trainee.std()), 2),
            "gap": round(float(expert.mean() - trainee.mean()), 2),
            "trainee_image_delta_deg": round(float(np.mean(deltas["trainee"])), 2),
            "paper_ordinary_similarity": paper.similarity,
            "paper_offset_deg": paper.offset_deg,
            "trainee_minus_paper": round(float(trainee.mean()) - paper.similarity, 2),
            # the paper's direction: ordinary operators score below the professional standard ...
            "same_direction": bool(expert.mean() > trainee.mean()),
            # ... and its levels: professionals define the >= 90 level, Table 7's ordinary operators are below it
            "same_levels": bool(expert.mean() >= 90.0 > trainee.mean()),
        }
    bands = {}
    for role in ("expert", "trainee"):
        values = [r["similarity"] for r in rows if r["role"] == role]
        bands[role] = {name: int(sum(low <= v < high for v in values)) for name, low, high in BANDS}
    return {
        "performers": rows,
        "tasks": tasks,
        "bands": bands,
        "paper": {
            "table7": {
                t: {
                    "chain": r.chain,
                    "expert_deg": r.expert_deg,
                    "ordinary_deg": r.ordinary_deg,
                    "similarity": r.similarity,
                }
                for t, r in TABLE7.items()
            },
            "table9": [
                {
                    "band": b.band,
                    "operators": b.operators,
                    "skill_score": b.skill_score,
                    "error_rate_pct": b.error_rate_pct,
                }
                for b in TABLE9
            ],
            "sources": [TABLE7_SOURCE, TABLE8, TABLE9_SOURCE],
        },
        "same_direction_all_tasks": all(t["same_direction"] for t in tasks.values()),
        "same_levels_all_tasks": all(t["same_levels"] for t in tasks.values()),
        "settings": settings.model_dump(mode="json"),
    }


def study_png(study: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tasks = list(study["tasks"])
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    for shift, role, colour in ((-0.27, "expert", "tab:green"), (0.0, "trainee", "tab:red")):
        means = [study["tasks"][t][f"{role}_mean"] for t in tasks]
        sds = [study["tasks"][t][f"{role}_sd"] for t in tasks]
        ax.bar(x + shift, means, 0.27, yerr=sds, color=colour, label=f"synthetic {role}s (ours)")
        for t_index, task in enumerate(tasks):
            values = [
                r["similarity"]
                for r in study["performers"]
                if r["task"] == task and r["role"] == role
            ]
            ax.scatter(np.full(len(values), t_index + shift), values, s=8, color="k", zorder=3)
    ax.bar(
        x + 0.27,
        [study["tasks"][t]["paper_ordinary_similarity"] for t in tasks],
        0.27,
        color="0.6",
        label="ordinary operators (paper, Table 7)",
    )
    for level, line in zip(GRADES, (90, 80, 70)):
        ax.axhline(line, color="0.5", linestyle=":", linewidth=1)
        ax.text(
            len(tasks) - 0.55,
            line + 0.5,
            f"{level}\n>= {line}",
            fontsize=7,
            color="0.35",
            va="bottom",
        )
    ax.set_xlim(-0.6, len(tasks) + 0.3)
    ax.set_xticks(x, tasks)
    ax.set_ylim(min(40.0, min(r["similarity"] for r in study["performers"]) - 5), 103)
    ax.set_ylabel("similarity (0-100)")
    ax.set_title("Synthetic experts vs trainees (ours) beside the paper's ordinary operators")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def study_markdown(study: dict[str, Any]) -> str:
    s = study["settings"]
    fluct = [r["fluctuation_deg"] for r in study["performers"] if r["role"] == "expert"]
    lines = [
        "# Action assessment on synthetic experts and trainees",
        "",
        f"Scorer: DTW-aligned chain angles, s = exp(-d^2 / (2 sigma^2)), sigma = {s['scoring']['sigma_deg']} deg, "
        f"fluctuation {s['scoring']['fluctuation']} of the {s['scoring']['fluctuation_of']}, "
        f"cap by fluctuation: {s['scoring']['cap_by_fluctuation']}. "
        f"Performers: {s['synthetic']['performers']} experts and {s['synthetic']['performers']} trainees per task "
        f"(seed {s['synthetic']['seed']}); trainee offset on the task's chain: "
        + (
            "Table 7's ordinary minus professional mean"
            if s["synthetic"]["trainee_offset_deg"] is None
            else f"{s['synthetic']['trainee_offset_deg']} deg"
        )
        + " on the 3D joint angle; the table gives how far that moves the chain angles in the image (weighted mean delta).",
        "",
        "| task | chain (paper) | trainee offset, 3D (deg) | in the image (deg) | experts | trainees | gap "
        "| paper: ordinary operators (Table 7) | experts > trainees | experts >= 90 > trainees |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, t in study["tasks"].items():
        lines.append(
            f"| {task} | {t['chain']} | {t['trainee_offset_deg']:.1f} | {t['trainee_image_delta_deg']:+.1f} | {t['expert_mean']:.1f} ± {t['expert_sd']:.1f} | "
            f"{t['trainee_mean']:.1f} ± {t['trainee_sd']:.1f} | {t['gap']:.1f} | {t['paper_ordinary_similarity']:.1f} | "
            f"{'yes' if t['same_direction'] else 'no'} | {'yes' if t['same_levels'] else 'no'} |"
        )
    lines += [
        "",
        "Separation in the paper's direction (experts score above trainees) on every task: "
        + ("**yes**" if study["same_direction_all_tasks"] else "**no**")
        + "; experts at the professional level (>= 90) and trainees below it, as the paper's Table 7 ordinary "
        "operators, on every task: "
        + ("**yes**" if study["same_levels_all_tasks"] else "**no**")
        + ".",
        f"Experts' fluctuation (the range of their deviation from the aligned reference) is {min(fluct):.1f}-"
        f"{max(fluct):.1f} deg at 3 kept frames a second (Table 8's professional limit: 10 deg).",
        "",
        "## Performers",
        "",
        "| task | role | # | frames | similarity | grade | fluctuation (deg) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in study["performers"]:
        lines.append(
            f"| {r['task']} | {r['role']} | {r['performer']} | {r['frames']} | {r['similarity']:.1f} | {r['grade']} | "
            f"{r['fluctuation_deg']:.1f} |"
        )
    lines += [
        "",
        "## Similarity bands (Table 9's bands)",
        "",
        "| band | paper: operators | ours: experts | ours: trainees |",
        "|---|---|---|---|",
    ]
    for band in TABLE9:
        lines.append(
            f"| {band.band} | {band.operators} | {study['bands']['expert'][band.band]} | "
            f"{study['bands']['trainee'][band.band]} |"
        )
    lines += [
        "",
        "Sources: " + "; ".join(study["paper"]["sources"]) + ".",
        "",
        "![experts vs trainees](assessment.png)",
        "",
    ]
    return "\n".join(lines)


def study_metrics(study: dict[str, Any]) -> dict[str, Any]:
    """The few numbers `dvc metrics` tracks: per task the experts' and trainees' mean similarity and the gap."""
    return {
        "tasks": {
            task: {k: t[k] for k in ("expert_mean", "trainee_mean", "gap", "same_direction")}
            for task, t in study["tasks"].items()
        },
        "same_direction_all_tasks": study["same_direction_all_tasks"],
        "same_levels_all_tasks": study["same_levels_all_tasks"],
    }


def write_study(
    settings: AssessParams, out_dir: str | Path, metrics_file: str | Path | None = None
) -> list[Path]:
    """Write assessment.json, assessment.png, the metrics file if given and, last, assessment.md under `out_dir`."""
    out_dir = Path(out_dir)
    study = run_study(settings)
    paths = [out_dir / "assessment.json", out_dir / "assessment.png"]
    write_bytes_atomic(paths[0], json.dumps(study, indent=1).encode())
    write_bytes_atomic(paths[1], study_png(study))
    if metrics_file is not None:
        paths.append(Path(metrics_file))
        write_bytes_atomic(paths[-1], json.dumps(study_metrics(study), indent=1).encode())
    paths.append(out_dir / "assessment.md")
    write_bytes_atomic(paths[-1], study_markdown(study).encode())
    return paths


def predicted_comparison(
    settings: AssessParams,
    predictor: Any,
    offsets: tuple[float, ...] = (0.0, 15.0),
    performers: int = 1,
    image_size: int = 256,
    tasks: tuple[str, ...] = TASK_ORDER,
) -> list[dict[str, Any]]:
    """The expert/trainee comparison on rendered performances, twice: on the front camera's labels and on
    the keypoints `predictor` (a body family's `predict(image_bgr, None)`, e.g. vmhpe) finds in the
    frames (person followed as in `poseops.assess.video`). One row per offset, task and source."""
    from poseops.assess.core import AssessInputError
    from poseops.assess.synthetic import render_performance
    from poseops.assess.video import Follower

    options = settings.scoring.model_dump()
    sigma = options.pop("sigma_deg")
    rows = []
    seen: dict[
        tuple, tuple[np.ndarray, np.ndarray]
    ] = {}  # the reference and experts do not change with the offset
    for offset in offsets:
        found = performances(
            seed=settings.synthetic.seed,
            performers=performers,
            trainee_offset_deg=offset,
            label_noise_px=0.0,
            tasks=tasks,
        )
        for task in tasks:
            sequences: dict[str, list[tuple[str, np.ndarray]]] = {"labels": [], "predicted": []}
            for p in (p for p in found if p.task == task):
                key = (p.task, p.role, p.index, p.offset_deg)
                if key not in seen:
                    frames, labels = render_performance(p, image_size, settings.synthetic.seed)
                    follower = Follower(17, settings.video.min_score)
                    for frame in frames:
                        follower.add(predictor.predict(frame, None))
                    seen[key] = labels, follower.sequence(f"{task} {p.role} {p.index}")
                sequences["labels"].append((p.role, seen[key][0]))
                sequences["predicted"].append((p.role, seen[key][1]))
            for source, items in sequences.items():
                reference = items[0][1]
                scores: dict[str, list[float]] = {"expert": [], "trainee": []}
                errors = []
                for role, keypoints in items[1:]:
                    try:
                        scores[role].append(
                            assess(
                                reference, keypoints, task, sigma_deg=sigma, **options
                            ).similarity
                        )
                    except AssessInputError as exc:
                        errors.append(str(exc))
                expert = float(np.mean(scores["expert"])) if scores["expert"] else float("nan")
                trainee = float(np.mean(scores["trainee"])) if scores["trainee"] else float("nan")
                rows.append(
                    {
                        "offset_deg": offset,
                        "task": task,
                        "source": source,
                        "expert_mean": round(expert, 2),
                        "trainee_mean": round(trainee, 2),
                        "gap": round(expert - trainee, 2),
                        "errors": errors,
                    }
                )
    return rows
