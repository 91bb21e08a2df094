"""Score a trainee's keypoint sequence against an expert's: `assess(reference, trial, task)`.

Zhang, He, Wu (2025), "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks" (Section 4.4,
Tables 7-8) grade operators by a "skeletal topology similarity" of their keypoint sequences to a
professional's, with task-related weights, but give no formula. The scorer here is explicit:

1. per frame, the task's chain angles (`poseops.skeletons.joint_angles`), optionally smoothed;
2. dynamic time warping (dtaidistance) of the trial's chain curves to the reference's, each curve
   centred on its mean so that the alignment follows the motion's phases, not a constant offset;
3. per chain m and reference frame, s = exp(-d^2 / (2 sigma^2)) of the angle difference d over the
   matched trial frames; optionally a bone-direction term (1 + cos) / 2 over the skeleton's edges;
4. S = 100 * sum_m w_m s_m (weights per task, renormalised over the chains present);
5. the grade from Table 8's similarity bands; the fluctuation (the range, max-min or p95-p5, of a
   chain's deviation from the aligned reference, or with `fluctuation_of="angle"` of the chain angle
   itself; worst chain) is reported against Table 8's 10/15/20 degree limits and, with
   `cap_by_fluctuation`, may lower the grade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dtaidistance import dtw, dtw_ndim
from pydantic import ValidationError

from poseops.assess.angles import (
    TASKS,
    chain_series,
    fill_gaps,
    mirror_name,
    smooth,
    task_weights,
)
from poseops.assess.grades import TABLE8, grade, grade_by_fluctuation, grade_by_similarity
from poseops.config import ScoringParams
from poseops.errors import ConfigError, DataError
from poseops.skeletons import Skeleton, get_skeleton


class AssessInputError(DataError):
    """A reference or trial the scorer cannot use: names the sequence, frame, joint or field."""


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class ChainResult:
    """One scored chain. Angles in degrees; deltas are trial minus reference (positive: a larger angle)."""

    name: str
    weight: float
    similarity: float  # 0-100
    mean_delta_deg: float
    mean_abs_delta_deg: float
    max_abs_delta_deg: float
    worst_frame: int  # reference frame of the largest |delta|
    worst_trial_frame: int
    fluctuation_deg: float  # range of the deviation from the aligned reference
    reference_range_deg: float  # max - min of the reference's angle
    trial_range_deg: float
    frames_scored: int


@dataclass(frozen=True)
class FrameResult:
    """One reference frame: the trial frames matched to it, its score and each chain's delta."""

    frame: int
    trial_frames: tuple[int, ...]
    score: float  # 0-100, NaN if no chain could be scored at this frame
    delta_deg: dict[str, float]


@dataclass(frozen=True)
class Assessment:
    task: str
    skeleton: str
    similarity: float  # 0-100
    grade: str
    grade_by_similarity: str
    grade_by_fluctuation: str
    fluctuation_deg: float
    fluctuation_chain: str
    chains: tuple[ChainResult, ...]
    skipped: dict[str, str]  # chain -> why it was not scored
    frames: tuple[FrameResult, ...]
    mirrored: bool  # the trial scored better with left and right swapped
    bone_similarity: float | None  # 0-100, when the bone-direction term is on
    path: tuple[tuple[int, int], ...]  # DTW pairs (reference frame, trial frame)
    reference_angles: dict[str, np.ndarray] = field(repr=False)  # chain -> [T_ref]
    trial_angles: dict[str, np.ndarray] = field(
        repr=False
    )  # chain -> [T_trial] (mirrored if `mirrored`)
    aligned_trial_angles: dict[str, np.ndarray] = field(repr=False)  # chain -> [T_ref]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_frames(self) -> int:
        return len(self.frames)

    def worst_frames(self, count: int = 4) -> list[FrameResult]:
        """The reference frames with the lowest score, worst first."""
        scored = [f for f in self.frames if math.isfinite(f.score)]
        return sorted(scored, key=lambda f: f.score)[:count]

    def advice(self) -> list[str]:
        """One line per chain a trainer can act on: how far off, which way, and where in the motion."""
        lines = []
        span = max(self.reference_frames - 1, 1)
        for chain in sorted(self.chains, key=lambda c: c.similarity):
            way = "larger" if chain.mean_delta_deg > 0 else "smaller"
            lines.append(
                f"{chain.name}: similarity {chain.similarity:.1f}; on average {abs(chain.mean_delta_deg):.1f} deg {way} "
                f"than the reference, worst {chain.max_abs_delta_deg:.1f} deg at reference frame {chain.worst_frame} "
                f"({100 * chain.worst_frame / span:.0f}% through the motion; trial frame {chain.worst_trial_frame}); "
                f"fluctuation {chain.fluctuation_deg:.1f} deg"
            )
        for name, why in self.skipped.items():
            lines.append(f"{name}: not scored ({why})")
        return lines

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """JSON-able: scores, grades, chains, skipped chains, per-frame breakdown (and angle curves)."""

        def num(value: float | None, digits: int = 3) -> float | None:
            return (
                None if value is None or not math.isfinite(value) else round(float(value), digits)
            )

        out: dict[str, Any] = {
            "task": self.task,
            "skeleton": self.skeleton,
            "similarity": num(self.similarity, 2),
            "grade": self.grade,
            "grade_by_similarity": self.grade_by_similarity,
            "grade_by_fluctuation": self.grade_by_fluctuation,
            "fluctuation_deg": num(self.fluctuation_deg, 2),
            "fluctuation_chain": self.fluctuation_chain,
            "mirrored": self.mirrored,
            "bone_similarity": num(self.bone_similarity, 2),
            "chains": [
                {k: num(v) if isinstance(v, float) else v for k, v in vars(c).items()}
                for c in self.chains
            ],
            "skipped": dict(self.skipped),
            "advice": self.advice(),
            "frames": [
                {
                    "frame": f.frame,
                    "trial_frames": list(f.trial_frames),
                    "score": num(f.score, 2),
                    "delta_deg": {k: num(v, 2) for k, v in f.delta_deg.items()},
                }
                for f in self.frames
            ],
            "options": self.options,
            "grading_standard": TABLE8,
        }
        if curves:
            out["curves"] = {
                name: {
                    "reference": [num(v, 2) for v in self.reference_angles[name]],
                    "trial": [num(v, 2) for v in self.trial_angles[name]],
                    "trial_aligned": [num(v, 2) for v in self.aligned_trial_angles[name]],
                }
                for name in self.reference_angles
            }
            out["path"] = [list(p) for p in self.path]
        return out


# ---------------------------------------------------------------- inputs
def parse_sequence(
    array: Any, label: str, skeleton: Skeleton, min_score: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """[T, K, 2] or [T, K, 3] (third value: score or COCO visibility) -> (coords [T, K, 2], present [T, K]).

    A joint is missing where its third value is <= `min_score`; NaN coordinates are allowed there only.
    """
    try:
        data = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AssessInputError(f"{label}: not a numeric array [T, K, 2|3] ({exc})") from None
    if data.ndim != 3 or data.shape[-1] not in (2, 3):
        raise AssessInputError(
            f"{label}: shape {list(data.shape)}; expected [frames, keypoints, 2 or 3]"
        )
    if data.shape[1] != skeleton.num_keypoints:
        raise AssessInputError(
            f"{label}: {data.shape[1]} keypoints per frame, but skeleton {skeleton.name!r} has {skeleton.num_keypoints}"
        )
    if data.shape[0] < 2:
        raise AssessInputError(f"{label}: {data.shape[0]} frame(s); a motion needs at least 2")
    coords = data[..., :2]
    if data.shape[-1] == 3:
        if np.isnan(data[..., 2]).any():
            frame, joint = np.argwhere(np.isnan(data[..., 2]))[0]
            raise AssessInputError(
                f"{label}: frame {frame}, keypoint {skeleton.keypoints[joint]!r}: score is NaN"
            )
        present = data[..., 2] > min_score
    else:
        present = np.ones(data.shape[:2], bool)
    bad = ~np.isfinite(coords).all(axis=-1) & present
    if bad.any():
        frame, joint = np.argwhere(bad)[0]
        raise AssessInputError(
            f"{label}: frame {frame}, keypoint {skeleton.keypoints[joint]!r}: coordinates are NaN or infinite "
            "(mark a missing joint with score/visibility 0)"
        )
    return np.where(present[..., None], coords, 0.0), present


def scoring_options(sigma_deg: float, options: dict[str, Any]) -> ScoringParams:
    try:
        return ScoringParams(sigma_deg=sigma_deg, **options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"assess options: {problems}") from None


# ---------------------------------------------------------------- alignment
def dtw_path(
    reference: np.ndarray, trial: np.ndarray, window: int | None = None
) -> list[tuple[int, int]]:
    """The DTW warping path [(i, j), ...] of trial [T2, D] onto reference [T1, D] (squared Euclidean
    step cost), from (0, 0) to (T1 - 1, T2 - 1); dtaidistance's C implementation."""
    kwargs: dict[str, Any] = {"use_c": True}
    if window is not None:
        kwargs["window"] = max(int(window), abs(len(reference) - len(trial)) + 1)
    a, b = np.ascontiguousarray(reference, np.float64), np.ascontiguousarray(trial, np.float64)
    if a.shape[1] == 1:
        path = dtw.warping_path(a[:, 0].copy(), b[:, 0].copy(), **kwargs)
    else:
        path = dtw_ndim.warping_path(a, b, **kwargs)
    return [(int(i), int(j)) for i, j in path]


# ---------------------------------------------------------------- scoring
def _fluctuation(values: np.ndarray, method: str) -> float:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan")
    if method == "p5_p95":
        low, high = np.percentile(values, [5, 95])
        return float(high - low)
    return float(values.max() - values.min())


def _bone_terms(ref_xy, ref_ok, trial_xy, trial_ok, skeleton: Skeleton, path) -> np.ndarray:
    """(1 + cos) / 2 of each path pair's bone directions, mean over edges present in both: [len(path)]."""
    i, j = np.array([p[0] for p in path]), np.array([p[1] for p in path])
    a, b = np.array([e[0] for e in skeleton.edges]), np.array([e[1] for e in skeleton.edges])
    u = ref_xy[i][:, b] - ref_xy[i][:, a]
    v = trial_xy[j][:, b] - trial_xy[j][:, a]
    ok = ref_ok[i][:, a] & ref_ok[i][:, b] & trial_ok[j][:, a] & trial_ok[j][:, b]
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    ok &= (nu > 0) & (nv > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(u * v, axis=-1) / (nu * nv)
        terms = np.where(ok, (1 + cos) / 2, 0.0).sum(axis=1) / ok.sum(axis=1)
    return terms


def _score(
    task,
    skeleton,
    settings,
    weights,
    ref_angles,
    trial_angles,
    ref_pose,
    trial_pose,
    mirrored,
    skipped,
):
    names = list(weights)
    ref_feat = np.stack(
        [fill_gaps(ref_angles[n]) - np.nanmean(ref_angles[n]) for n in names], axis=1
    )
    trial_feat = np.stack(
        [fill_gaps(trial_angles[n]) - np.nanmean(trial_angles[n]) for n in names], axis=1
    )
    root_w = np.sqrt(np.array([weights[n] for n in names]))
    path = dtw_path(ref_feat * root_w, trial_feat * root_w, settings.dtw_window)
    t_ref = len(ref_angles[names[0]])
    pi = np.array([p[0] for p in path])
    pj = np.array([p[1] for p in path])
    matched = [tuple(int(j) for j in pj[pi == i]) for i in range(t_ref)]

    def per_ref_frame(
        values: np.ndarray,
    ) -> np.ndarray:  # mean over each reference frame's pairs, NaN-aware
        finite = np.isfinite(values)
        sums = np.bincount(pi, weights=np.where(finite, values, 0.0), minlength=t_ref)
        n = np.bincount(pi, weights=finite.astype(float), minlength=t_ref)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, sums / n, np.nan)

    sigma2 = 2.0 * settings.sigma_deg**2
    deltas, sims, aligned = {}, {}, {}
    for n in names:
        d_pairs = trial_angles[n][pj] - ref_angles[n][pi]
        deltas[n] = per_ref_frame(d_pairs)
        sims[n] = per_ref_frame(np.exp(-(d_pairs**2) / sigma2))
        aligned[n] = per_ref_frame(trial_angles[n][pj])
    for n in [
        n for n in names if not np.isfinite(deltas[n]).any()
    ]:  # present in both, never at matched frames
        skipped[n] = "no aligned frame pair has its joints in both sequences"
        names.remove(n)
    if not names:
        raise AssessInputError(
            f"task {task}: no chain can be scored ({'; '.join(f'{n}: {w}' for n, w in skipped.items())})"
        )
    total = sum(weights[n] for n in names)
    weights = {n: weights[n] / total for n in names}
    bone = None
    if settings.bone_weight > 0:
        bone = per_ref_frame(_bone_terms(*ref_pose, *trial_pose, skeleton, path))

    chains = []
    for n in names:
        d = deltas[n]
        ok = np.isfinite(d)
        worst = int(np.nanargmax(np.abs(d)))
        worst_trial = max(
            matched[worst],
            key=lambda j: (
                abs(trial_angles[n][j] - ref_angles[n][worst])
                if np.isfinite(trial_angles[n][j])
                else -1.0
            ),
        )
        chains.append(
            ChainResult(
                name=n,
                weight=weights[n],
                similarity=100.0 * float(np.nanmean(sims[n])),
                mean_delta_deg=float(np.nanmean(d)),
                mean_abs_delta_deg=float(np.nanmean(np.abs(d))),
                max_abs_delta_deg=float(np.nanmax(np.abs(d))),
                worst_frame=worst,
                worst_trial_frame=int(worst_trial),
                fluctuation_deg=_fluctuation(
                    d if settings.fluctuation_of == "deviation" else trial_angles[n],
                    settings.fluctuation,
                ),
                reference_range_deg=_fluctuation(ref_angles[n], "max_min"),
                trial_range_deg=_fluctuation(trial_angles[n], "max_min"),
                frames_scored=int(ok.sum()),
            )
        )
    angle_part = sum(c.weight * c.similarity / 100.0 for c in chains)
    b = settings.bone_weight
    bone_similarity = None if bone is None else 100.0 * float(np.nanmean(bone))
    similarity = 100.0 * (
        angle_part if bone is None else (1 - b) * angle_part + b * float(np.nanmean(bone))
    )

    frames = []
    sim_matrix = np.stack([sims[n] for n in names], axis=1)  # [T_ref, M]
    w = np.array([weights[n] for n in names])
    for i in range(t_ref):
        ok = np.isfinite(sim_matrix[i])
        score = float(np.sum(w[ok] * sim_matrix[i, ok]) / w[ok].sum()) if ok.any() else float("nan")
        if bone is not None and math.isfinite(bone[i]):
            score = (1 - b) * score + b * float(bone[i])
        frames.append(
            FrameResult(i, matched[i], 100.0 * score, {n: float(deltas[n][i]) for n in names})
        )

    worst_chain = max(
        chains, key=lambda c: c.fluctuation_deg if math.isfinite(c.fluctuation_deg) else -1.0
    )
    fluctuation = worst_chain.fluctuation_deg
    return Assessment(
        task=task,
        skeleton=skeleton.name,
        similarity=similarity,
        grade=grade(similarity, fluctuation, settings.cap_by_fluctuation),
        grade_by_similarity=grade_by_similarity(similarity),
        grade_by_fluctuation=grade_by_fluctuation(fluctuation),
        fluctuation_deg=fluctuation,
        fluctuation_chain=worst_chain.name,
        chains=tuple(chains),
        skipped=dict(skipped),
        frames=tuple(frames),
        mirrored=mirrored,
        bone_similarity=bone_similarity,
        path=tuple((int(i), int(j)) for i, j in path),
        reference_angles={n: ref_angles[n] for n in names},
        trial_angles={n: trial_angles[n] for n in names},
        aligned_trial_angles=aligned,
        options=settings.model_dump(mode="json"),
    )


def _coverage_ok(series: np.ndarray, min_coverage: float) -> bool:
    finite = np.isfinite(series)
    return finite.sum() >= 2 and finite.mean() >= min_coverage


def assess(
    reference: Any,
    trial: Any,
    task: str,
    skeleton: str | Skeleton = "coco17",
    sigma_deg: float = 15.0,
    **options: Any,
) -> Assessment:
    """Score `trial` against `reference` on `task` (TO, PC, CT, CR or PF); options: `ScoringParams`.

    reference, trial: [T, K, 2] or [T, K, 3] (score or COCO visibility; <= `min_score` is missing) in
    image pixels of `skeleton`'s keypoints. A chain missing (below `min_coverage` of the frames) in
    either sequence is skipped and named in `Assessment.skipped`; the others keep their relative weights.
    Raises AssessInputError (a DataError) for unusable sequences, ConfigError for bad options.
    """
    if task not in TASKS:
        raise AssessInputError(f"task {task!r}: unknown; tasks: {', '.join(TASKS)}")
    if isinstance(skeleton, str):
        try:
            skeleton = get_skeleton(skeleton)
        except KeyError as exc:
            raise AssessInputError(f"skeleton: {exc.args[0]}") from None
    settings = scoring_options(sigma_deg, options)
    weights = task_weights(task, settings.weights)
    ref_xy, ref_ok = parse_sequence(reference, "reference", skeleton, settings.min_score)
    trial_xy, trial_ok = parse_sequence(trial, "trial", skeleton, settings.min_score)

    wanted = tuple(weights) + tuple(
        mirror_name(n) for n in weights if mirror_name(n) not in weights
    )

    def series(xy, ok):
        raw = chain_series(xy, ok, skeleton, wanted)
        return {
            n: smooth(v, settings.smoothing, settings.smoothing_window, settings.one_euro)
            for n, v in raw.items()
        }

    ref_angles, trial_angles = series(ref_xy, ref_ok), series(trial_xy, trial_ok)
    mirrored_angles = {
        n: trial_angles[mirror_name(n)] for n in wanted if mirror_name(n) in trial_angles
    }

    def attempt(candidate: dict[str, np.ndarray], mirrored: bool) -> Assessment:
        skipped: dict[str, str] = {}
        kept: dict[str, float] = {}
        for n, w in weights.items():
            if n not in ref_angles or n not in candidate:
                skipped[n] = f"skeleton {skeleton.name!r} lacks its joints"
            elif not _coverage_ok(ref_angles[n], settings.min_coverage):
                skipped[n] = (
                    f"missing joints in {100 * np.isnan(ref_angles[n]).mean():.0f}% of the reference's frames"
                )
            elif not _coverage_ok(candidate[n], settings.min_coverage):
                skipped[n] = (
                    f"missing joints in {100 * np.isnan(candidate[n]).mean():.0f}% of the trial's frames"
                )
            else:
                kept[n] = w
        if not kept:
            reasons = "; ".join(f"{n}: {why}" for n, why in skipped.items())
            raise AssessInputError(f"task {task}: no chain can be scored ({reasons})")
        total = sum(kept.values())
        kept = {n: w / total for n, w in kept.items()}
        pose = (
            (trial_xy[:, skeleton.flip_permutation()], trial_ok[:, skeleton.flip_permutation()])
            if mirrored
            else (trial_xy, trial_ok)
        )
        return _score(
            task,
            skeleton,
            settings,
            kept,
            ref_angles,
            candidate,
            (ref_xy, ref_ok),
            pose,
            mirrored,
            skipped,
        )

    result = attempt(trial_angles, False)
    symmetric = all(weights.get(mirror_name(n)) == w for n, w in weights.items())
    if settings.allow_mirror and symmetric and any(mirror_name(n) != n for n in weights):
        try:
            flipped = attempt(mirrored_angles, True)
        except AssessInputError:
            flipped = None
        if flipped is not None and flipped.similarity > result.similarity + 1e-9:
            result = flipped
    return result
