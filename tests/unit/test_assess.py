"""poseops.assess: the scorer on sequences with exactly known chain angles (tests/helpers_assess.py),
independent of the synthetic generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers_assess import mirrored, motion, reference, warped_phase
from poseops.assess import GRADES, AssessInputError, assess, grade
from poseops.assess.angles import moving_average, one_euro
from poseops.assess.core import dtw_path
from poseops.config import OneEuroParams
from poseops.errors import ConfigError, PoseopsError

TASKS = ("TO", "PC", "CT", "CR", "PF")
PHASE = np.linspace(0.0, 1.0, 30)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("task", TASKS)
def test_a_time_warped_copy_of_the_reference_scores_at_least_98(task, seed):
    rng = np.random.default_rng(seed)
    phase = warped_phase(rng, low=0.7, high=1.4)
    result = assess(reference(), motion(phase), task)
    assert len(phase) != 30 or not np.allclose(phase, PHASE)
    assert result.similarity >= 98.0, (task, seed, result.similarity)
    assert result.grade == "Professional"


def test_a_plus_10_degree_offset_on_one_chain_gives_that_chain_exp_minus_half_of_two_thirds_squared():
    expected = 100 * math.exp(-(10**2) / (2 * 15**2))  # 80.07
    trial = motion(PHASE, {"left_elbow": 10.0})
    result = assess(reference(), trial, "TO", sigma_deg=15.0)
    chains = {c.name: c for c in result.chains}
    assert chains["left_elbow"].similarity == pytest.approx(expected, abs=1.0)
    assert chains["right_elbow"].similarity == pytest.approx(100.0, abs=0.01)
    assert chains["left_elbow"].mean_delta_deg == pytest.approx(10.0, abs=0.5)
    alone = assess(reference(), trial, "TO", weights={"TO": {"left_elbow": 1.0}})
    assert alone.similarity == pytest.approx(expected, abs=1.0)
    assert [c.name for c in alone.chains] == ["left_elbow"]


@pytest.mark.parametrize(
    "task,chain",
    [
        ("TO", "left_elbow"),
        ("PC", "right_hip"),
        ("CR", "left_knee"),
        ("PF", "trunk_lean"),
        ("CT", "left_elbow"),
    ],
)
def test_scores_fall_monotonically_as_the_offset_grows(task, chain):
    scores = [
        assess(reference(), motion(PHASE, {chain: offset}), task).similarity
        for offset in (0, 5, 10, 20, 40)
    ]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 99.9


def test_the_grade_follows_table_8_bands_and_fluctuation_caps_it_exactly_at_10_15_20():
    assert [grade(s) for s in (100, 90.0, 89.99, 80.0, 79.99, 70.0, 69.99, 0)] == [
        "Professional",
        "Professional",
        "Proficient",
        "Proficient",
        "Qualified",
        "Qualified",
        "Needs improvement",
        "Needs improvement",
    ]
    expected = [
        "Professional",
        "Proficient",
        "Proficient",
        "Qualified",
        "Qualified",
        "Needs improvement",
    ]
    limits = [10.0, 10.0 + 1e-9, 15.0, 15.0 + 1e-9, 20.0, 20.0 + 1e-9]
    assert [grade(95.0, f, cap_by_fluctuation=True) for f in limits] == expected
    assert {grade(95.0, f, cap_by_fluctuation=False) for f in limits} == {"Professional"}
    assert grade(75.0, 5.0, cap_by_fluctuation=True) == "Qualified"  # a cap never raises a grade


@pytest.mark.parametrize(
    "fluctuation,expected",
    [
        (9.9, "Professional"),
        (10.1, "Proficient"),
        (14.9, "Proficient"),
        (15.1, "Qualified"),
        (19.9, "Qualified"),
        (20.1, "Needs improvement"),
    ],
)
def test_a_trial_whose_deviation_ranges_over_f_degrees_is_graded_by_f_with_the_cap(
    fluctuation, expected
):
    ramp = np.linspace(0.0, fluctuation, 30)  # the trial drifts away from the reference by up to F
    trial = motion(PHASE, {"trunk_lean": ramp})
    options = dict(sigma_deg=1000.0, dtw_window=1)  # similarity ~100: fluctuation alone decides
    capped = assess(reference(), trial, "PF", cap_by_fluctuation=True, **options)
    assert capped.fluctuation_deg == pytest.approx(fluctuation, abs=1e-6)
    assert capped.similarity > 99.9
    assert capped.grade == expected and capped.grade_by_fluctuation == expected
    assert assess(reference(), trial, "PF", **options).grade == "Professional"


def test_p5_p95_fluctuation_ignores_a_single_spike():
    spike = np.zeros(30)
    spike[12] = 25.0
    trial = motion(PHASE, {"trunk_lean": spike})
    full = assess(reference(), trial, "PF", dtw_window=1)
    robust = assess(reference(), trial, "PF", dtw_window=1, fluctuation="p5_p95")
    assert full.fluctuation_deg == pytest.approx(25.0, abs=1e-6)
    assert robust.fluctuation_deg < 5.0


@pytest.mark.parametrize("task", TASKS)
def test_a_left_right_mirrored_trial_of_a_symmetric_task_scores_as_the_original(task):
    chain = {
        "TO": "left_elbow",
        "PC": "left_hip",
        "CR": "left_knee",
        "CT": "left_elbow",
        "PF": "trunk_lean",
    }[task]
    trial = motion(warped_phase(np.random.default_rng(3)), {chain: 12.0})
    original = assess(reference(), trial, task)
    flipped = assess(reference(), mirrored(trial), task)
    assert original.similarity < 97  # the offset is felt
    assert flipped.similarity == pytest.approx(original.similarity, abs=1e-6)
    assert not original.mirrored
    if task in ("TO", "PC", "CR"):  # sided chains: the better of the trial and its left/right swap
        assert flipped.mirrored
        # without the mirror search the swapped sides are compared as they are, and score lower
        assert (
            assess(reference(), mirrored(trial), task, allow_mirror=False).similarity
            < original.similarity - 1
        )
    else:  # midline chains (trunk lean, arm mean, arm symmetry) do not change in a mirror
        assert not flipped.mirrored


def test_a_sequence_with_missing_joints_is_scored_on_the_chains_it_has_and_says_which_were_skipped():
    trial = np.concatenate(
        [motion(PHASE, {"right_elbow": 10.0}), np.full((30, 17, 1), 2.0)], axis=-1
    )
    trial[:, 9, 2] = 0  # left wrist never seen
    trial[:, 9, :2] = np.nan  # allowed where the joint is marked missing
    result = assess(reference(), trial, "TO")
    assert [c.name for c in result.chains] == ["right_elbow"]
    assert list(result.skipped) == ["left_elbow"] and "trial" in result.skipped["left_elbow"]
    assert result.similarity == pytest.approx(100 * math.exp(-100 / 450), abs=1.0)
    assert any("left_elbow: not scored" in line for line in result.advice())
    assert result.to_dict()["skipped"] == result.skipped
    # a joint missing in a few frames only: the chain is still scored, on the frames it has
    some = np.concatenate([reference(), np.full((30, 17, 1), 2.0)], axis=-1)
    some[5:9, 9, 2] = 0
    partial = assess(reference(), some, "TO")
    assert (
        not partial.skipped and {c.name: c.frames_scored for c in partial.chains}["left_elbow"] < 30
    )


def test_every_chain_missing_is_a_named_error():
    trial = np.concatenate([reference(), np.full((30, 17, 1), 2.0)], axis=-1)
    trial[:, [13, 14], 2] = 0  # no knees
    with pytest.raises(AssessInputError, match="no chain can be scored.*left_knee"):
        assess(reference(), trial, "CR")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda r: (r, r[:, :16]), "trial: 16 keypoints per frame"),
        (lambda r: (r[:1], r), "reference: 1 frame"),
        (
            lambda r: (r, np.where(np.arange(17)[None, :, None] == 5, np.nan, r)),
            "trial: frame 0, keypoint 'left_shoulder'",
        ),
        (lambda r: (r[..., 0], r), r"reference: shape \[30, 17\]"),
    ],
)
def test_bad_sequences_are_named_errors(make, match):
    reference_, trial = make(reference())
    with pytest.raises(AssessInputError, match=match) as caught:
        assess(reference_, trial, "TO")
    assert isinstance(caught.value, PoseopsError)


def test_an_unknown_task_option_or_chain_is_a_named_error():
    with pytest.raises(
        AssessInputError, match="task 'XX': unknown; tasks: TO, PF, CR, CT, PC|task 'XX'"
    ):
        assess(reference(), reference(), "XX")
    with pytest.raises(ConfigError, match="sigma_deg"):
        assess(reference(), reference(), "TO", sigma_deg=-1)
    with pytest.raises(ConfigError, match="smoothin"):
        assess(reference(), reference(), "TO", smoothin="none")
    with pytest.raises(ConfigError, match="weights.TO.left_wrist: unknown chain"):
        assess(reference(), reference(), "TO", weights={"TO": {"left_wrist": 1.0}})


def test_per_frame_breakdown_says_where_and_how_far_off():
    bump = np.where((PHASE > 0.4) & (PHASE < 0.6), 30.0, 0.0)
    result = assess(reference(), motion(PHASE, {"right_knee": bump}), "CR", dtw_window=1)
    worst = result.worst_frames(3)
    assert all(0.4 < PHASE[f.frame] < 0.6 for f in worst)
    assert all(f.delta_deg["right_knee"] == pytest.approx(30.0) for f in worst)
    knee = {c.name: c for c in result.chains}["right_knee"]
    assert 0.4 < PHASE[knee.worst_frame] < 0.6 and knee.max_abs_delta_deg == pytest.approx(30.0)
    record = result.to_dict()
    assert len(record["frames"]) == 30 and record["grade"] in GRADES
    assert record["curves"]["right_knee"]["reference"][0] == pytest.approx(
        150.0 - 25.0 * math.sin(0.4), abs=0.01
    )
    assert record["grading_standard"].startswith("Zhang S., He H., Wu Y. (2025)")


def test_the_bone_direction_term_lowers_the_score_of_a_different_pose():
    trial = motion(PHASE, {"left_elbow": 20.0})
    plain = assess(reference(), trial, "PF")  # the trunk is identical: 100
    with_bones = assess(reference(), trial, "PF", bone_weight=0.5)
    assert plain.similarity == pytest.approx(100.0, abs=1e-6)
    assert 50.0 < with_bones.similarity < 100.0 and with_bones.bone_similarity < 100.0
    assert assess(reference(), reference(), "PF", bone_weight=0.5).similarity == pytest.approx(
        100.0, abs=1e-6
    )


def test_smoothing_reduces_jitter_and_keeps_a_constant():
    rng = np.random.default_rng(0)
    x = 90.0 + rng.normal(0.0, 3.0, 200)
    for smoothed in (moving_average(x, 5), one_euro(x, OneEuroParams(min_cutoff=0.3, rate_hz=3.0))):
        assert np.std(smoothed) < 0.7 * np.std(x)
    assert np.allclose(moving_average(np.full(10, 7.0), 3), 7.0)
    assert np.allclose(one_euro(np.full(10, 7.0), OneEuroParams()), 7.0)
    gap = moving_average(np.array([1.0, np.nan, 3.0, 5.0]), 3)
    assert np.isnan(gap[1]) and gap[2] == 4.0 and gap[0] == 1.0
    rough = motion(PHASE) + rng.normal(0.0, 1.5, (30, 17, 2))
    noisy = assess(reference(), rough, "TO")
    for method in ("moving_average", "one_euro"):
        assert (
            assess(reference(), rough, "TO", smoothing=method).fluctuation_deg
            < noisy.fluctuation_deg
        )


def brute_force_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """The DTW recursion written out cell by cell: cost of the best path, squared Euclidean steps."""
    n, m = len(a), len(b)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            step = float(np.sum((a[i - 1] - b[j - 1]) ** 2))
            cost[i, j] = step + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    return float(cost[n, m])


@pytest.mark.parametrize("dims", [1, 3])
def test_the_dtw_path_is_an_optimal_monotone_path(dims):
    rng = np.random.default_rng(dims)
    for _ in range(5):
        a, b = (
            rng.normal(size=(int(rng.integers(4, 12)), dims)),
            rng.normal(size=(int(rng.integers(4, 12)), dims)),
        )
        path = dtw_path(a, b)
        assert path[0] == (0, 0) and path[-1] == (len(a) - 1, len(b) - 1)
        assert all(
            0 <= i2 - i1 <= 1 and 0 <= j2 - j1 <= 1 and (i2, j2) != (i1, j1)
            for (i1, j1), (i2, j2) in zip(path, path[1:])
        )
        cost = sum(float(np.sum((a[i] - b[j]) ** 2)) for i, j in path)
        assert cost == pytest.approx(brute_force_dtw(a, b), rel=1e-9)


def test_a_chain_seen_in_both_sequences_but_never_at_matched_frames_is_skipped():
    ref = np.concatenate([reference(), np.full((30, 17, 1), 2.0)], axis=-1)
    trial = ref.copy()
    ref[15:, 9, 2] = 0  # left wrist: the reference shows it in the first half only ...
    trial[:15, 9, 2] = 0  # ... the trial in the second half only
    result = assess(ref, trial, "TO", dtw_window=1)
    assert (
        "left_elbow" in result.skipped and "no aligned frame pair" in result.skipped["left_elbow"]
    )
    assert [c.name for c in result.chains] == ["right_elbow"] and result.chains[0].weight == 1.0


def test_fluctuation_of_the_angle_itself_is_the_trials_range():
    result = assess(reference(), reference(), "PF", fluctuation_of="angle", dtw_window=1)
    assert result.fluctuation_deg == pytest.approx(
        12.0, abs=0.05
    )  # trunk lean 30 + 12 sin(pi p), p in [0, 1]
    assert assess(reference(), reference(), "PF", dtw_window=1).fluctuation_deg == pytest.approx(
        0.0, abs=1e-9
    )
