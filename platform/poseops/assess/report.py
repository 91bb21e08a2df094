"""Reports a trainer can read: angle curves after alignment, a strip of the worst frames, HTML/JSON.

    write_report(assessment, reference, trial, "report.html")  # or .json; PNGs are written beside it

The curves plot shows, per chain, the reference's angle and the trial's angle matched to each
reference frame by the DTW path, the gap shaded; the strip draws the reference (green) and the trial
(red, moved and scaled onto the reference's hips and trunk) at the frames that scored worst.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np

from poseops.assess.core import Assessment, parse_sequence
from poseops.errors import DataError
from poseops.skeletons import Skeleton, get_skeleton
from poseops.storage import write_bytes_atomic
from poseops.viz.overlay import draw_keypoints

REFERENCE_BGR = (60, 160, 40)
TRIAL_BGR = (40, 40, 220)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def curves_png(assessment: Assessment) -> bytes:
    """PNG: one panel per scored chain, reference vs aligned trial angle over the reference's frames."""
    plt = _pyplot()
    chains = assessment.chains
    fig, axes = plt.subplots(
        len(chains), 1, figsize=(7.5, 2.3 * len(chains) + 0.6), dpi=100, squeeze=False
    )
    for ax, chain in zip(axes[:, 0], chains):
        ref = assessment.reference_angles[chain.name]
        aligned = assessment.aligned_trial_angles[chain.name]
        x = np.arange(len(ref))
        ax.plot(x, ref, color="tab:green", marker="o", markersize=3, label="reference")
        ax.plot(x, aligned, color="tab:red", marker="o", markersize=3, label="trial (aligned)")
        ax.fill_between(
            x,
            ref,
            aligned,
            where=np.isfinite(ref) & np.isfinite(aligned),
            color="tab:red",
            alpha=0.15,
        )
        ax.axvline(chain.worst_frame, color="0.4", linestyle=":", linewidth=1)
        ax.set_title(
            f"{chain.name}: similarity {chain.similarity:.1f}, mean delta {chain.mean_delta_deg:+.1f} deg, "
            f"fluctuation {chain.fluctuation_deg:.1f} deg",
            fontsize=9,
        )
        ax.set_ylabel("angle (deg)")
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[:, 0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("reference frame")
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.suptitle(
        f"{assessment.task}: similarity {assessment.similarity:.1f} ({assessment.grade})",
        fontsize=11,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _anchor(points: np.ndarray, ok: np.ndarray, skeleton: Skeleton) -> tuple[np.ndarray, float]:
    """(centre, size) of a pose: mid-hip and hip-to-shoulder length where present, else the box."""
    names = skeleton.keypoints
    pick = [
        names.index(n)
        for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
        if n in names
    ]
    hips, shoulders = pick[:2], pick[2:]
    if pick and ok[pick].all():
        centre = points[hips].mean(axis=0)
        return centre, max(float(np.linalg.norm(points[shoulders].mean(axis=0) - centre)), 1.0)
    seen = points[ok]
    if len(seen) == 0:
        return np.zeros(2), 1.0
    return seen.mean(axis=0), max(float(np.ptp(seen, axis=0).max()) / 3.0, 1.0)


def worst_frames_png(
    assessment: Assessment,
    reference: np.ndarray,
    trial: np.ndarray,
    count: int = 4,
    tile: int = 240,
) -> bytes:
    """PNG strip: the `count` worst reference frames, reference (green) and matched trial (red)."""
    skeleton = get_skeleton(assessment.skeleton)
    ref_xy, ref_ok = parse_sequence(
        reference, "reference", skeleton, assessment.options.get("min_score", 0.0)
    )
    trial_xy, trial_ok = parse_sequence(
        trial, "trial", skeleton, assessment.options.get("min_score", 0.0)
    )
    if assessment.mirrored:
        flip = list(skeleton.flip_permutation())
        trial_xy, trial_ok = trial_xy[:, flip], trial_ok[:, flip]
    tiles = []
    for frame in sorted(assessment.worst_frames(count), key=lambda f: f.frame):
        canvas = np.full((tile, tile, 3), 255, np.uint8)
        j = frame.trial_frames[len(frame.trial_frames) // 2]
        r_centre, r_size = _anchor(ref_xy[frame.frame], ref_ok[frame.frame], skeleton)
        t_centre, t_size = _anchor(trial_xy[j], trial_ok[j], skeleton)
        ref_points = ref_xy[frame.frame] - r_centre
        trial_points = (trial_xy[j] - t_centre) * (r_size / t_size)
        seen = np.concatenate([ref_points[ref_ok[frame.frame]], trial_points[trial_ok[j]]])
        low, high = (seen.min(axis=0), seen.max(axis=0)) if len(seen) else (np.zeros(2), np.ones(2))
        top, margin = 56, 10  # room for the text lines
        scale = min(
            (tile - 2 * margin) / max(high[0] - low[0], 1e-6),
            (tile - top - margin) / max(high[1] - low[1], 1e-6),
        )
        place = np.array([tile / 2, top + (tile - top - margin) / 2]) - scale * (low + high) / 2
        ref_points, trial_points = ref_points * scale + place, trial_points * scale + place
        draw_keypoints(
            canvas, ref_points, skeleton, np.where(ref_ok[frame.frame], 2, 0), color=REFERENCE_BGR
        )
        draw_keypoints(canvas, trial_points, skeleton, np.where(trial_ok[j], 2, 0), color=TRIAL_BGR)
        worst = max(
            frame.delta_deg.items(), key=lambda kv: abs(kv[1]) if math.isfinite(kv[1]) else -1.0
        )
        lines = [
            f"ref {frame.frame} / trial {j}",
            f"score {frame.score:.0f}",
            f"{worst[0]} {worst[1]:+.0f} deg",
        ]
        for row, text in enumerate(lines):
            cv2.putText(
                canvas,
                text,
                (6, 16 + 16 * row),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (30, 30, 30),
                1,
                cv2.LINE_AA,
            )
        cv2.rectangle(canvas, (0, 0), (tile - 1, tile - 1), (200, 200, 200), 1)
        tiles.append(canvas)
    legend = np.full((22, tile * max(len(tiles), 1), 3), 255, np.uint8)
    cv2.putText(
        legend,
        "green: reference   red: trial (matched frame)",
        (6, 15),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (30, 30, 30),
        1,
        cv2.LINE_AA,
    )
    strip = np.vstack(
        [np.hstack(tiles) if tiles else np.full((tile, tile, 3), 255, np.uint8), legend]
    )
    ok, encoded = cv2.imencode(".png", strip)
    return encoded.tobytes()


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(assessment: Assessment, curves: bytes, strip: bytes) -> str:
    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    chain_rows = [
        [
            c.name,
            f"{c.weight:.2f}",
            f"{c.similarity:.1f}",
            f"{c.mean_delta_deg:+.1f}",
            f"{c.max_abs_delta_deg:.1f}",
            str(c.worst_frame),
            f"{c.fluctuation_deg:.1f}",
            str(c.frames_scored),
        ]
        for c in assessment.chains
    ]
    frame_rows = [
        [
            str(f.frame),
            ",".join(map(str, f.trial_frames)),
            f"{f.score:.1f}",
            ", ".join(f"{k} {v:+.1f}" for k, v in f.delta_deg.items()),
        ]
        for f in assessment.frames
    ]
    skipped = "".join(
        f"<li>{html.escape(n)}: {html.escape(w)}</li>" for n, w in assessment.skipped.items()
    )
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in assessment.advice())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Assessment {assessment.task}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}img{{max-width:100%}}</style></head><body>
<h1>Task {assessment.task}: similarity {assessment.similarity:.1f} / 100 &mdash; {html.escape(assessment.grade)}</h1>
<p>By similarity: {html.escape(assessment.grade_by_similarity)}; by fluctuation ({assessment.fluctuation_deg:.1f} deg on
{html.escape(assessment.fluctuation_chain)}): {html.escape(assessment.grade_by_fluctuation)};
capped by fluctuation: {assessment.options.get("cap_by_fluctuation")}; mirrored trial: {assessment.mirrored}.
Grades: {html.escape(assessment.to_dict(curves=False)["grading_standard"])}.</p>
<h2>What to work on</h2><ul>{advice}</ul>
{f"<h2>Not scored</h2><ul>{skipped}</ul>" if skipped else ""}
<h2>Chains</h2>{_table(["chain", "weight", "similarity", "mean delta (deg)", "max |delta|", "worst frame", "fluctuation", "frames"], chain_rows)}
<h2>Angle curves after alignment</h2>{img(curves, "angle curves")}
<h2>Worst frames</h2>{img(strip, "worst frames")}
<h2>Per frame</h2>{_table(["reference frame", "trial frames", "score", "delta (deg)"], frame_rows)}
</body></html>"""


def write_report(
    assessment: Assessment, reference: np.ndarray, trial: np.ndarray, out: str | Path
) -> list[Path]:
    """Write `out` (.html or .json) and its two PNGs beside it (`<stem>_curves.png`, `<stem>_frames.png`).
    Returns the paths written, the report last."""
    out = Path(out)
    if out.suffix not in (".html", ".json"):
        raise DataError(f"{out}: the report must be .html or .json")
    curves, strip = curves_png(assessment), worst_frames_png(assessment, reference, trial)
    written = []
    for suffix, data in (("_curves.png", curves), ("_frames.png", strip)):
        path = out.with_name(out.stem + suffix)
        write_bytes_atomic(path, data)
        written.append(path)
    if out.suffix == ".json":
        record = {**assessment.to_dict(), "images": [p.name for p in written]}
        write_bytes_atomic(out, json.dumps(record, indent=1).encode())
    else:
        write_bytes_atomic(out, render_html(assessment, curves, strip).encode())
    written.append(out)
    return written
