"""The scorer separates synthetic experts from trainees by the trainee offset the test sets
(poseops.assess.synthetic: labels only)."""

import numpy as np
import pytest

from poseops.assess import assess
from poseops.assess.synthetic import TASK_ORDER, performances, table7_offset


def mean_scores(offset):
    found = performances(seed=0, performers=3, trainee_offset_deg=offset)
    scores = {}
    for task in TASK_ORDER:
        reference = next(p for p in found if p.task == task and p.role == "reference")
        for role in ("expert", "trainee"):
            scores[task, role] = np.mean(
                [
                    assess(reference.keypoints, p.keypoints, task).similarity
                    for p in found
                    if p.task == task and p.role == role
                ]
            )
    return scores


@pytest.fixture(scope="module")
def at_0_and_15():
    return mean_scores(0.0), mean_scores(15.0)


@pytest.mark.parametrize("task", TASK_ORDER)
def test_trainees_at_0_degrees_score_as_experts_and_at_15_degrees_at_least_10_lower(
    task, at_0_and_15
):
    zero, fifteen = at_0_and_15
    assert abs(zero[task, "trainee"] - zero[task, "expert"]) <= 2.0, zero
    assert fifteen[task, "expert"] - fifteen[task, "trainee"] >= 10.0, fifteen
    assert fifteen[task, "expert"] == pytest.approx(zero[task, "expert"])  # only trainees changed
    assert zero[task, "expert"] >= 90.0


def test_performances_are_seeded_time_warped_coco17_labels():
    first, again = performances(seed=1, performers=1), performances(seed=1, performers=1)
    assert [p.role for p in first[:3]] == ["reference", "expert", "trainee"]
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(first, again))
    lengths = {p.role: len(p.keypoints) for p in first if p.task == "PC"}
    assert lengths["reference"] == 30 and all(21 <= n <= 43 for n in lengths.values())
    assert all(p.keypoints.shape[1:] == (17, 3) for p in first)
    trainee = next(p for p in first if p.role == "trainee" and p.task == "PC")
    assert trainee.offset_deg == table7_offset("PC") == pytest.approx(13.1)
