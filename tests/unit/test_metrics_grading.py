"""VMHPE (Zhang, He, Wu, 2025) Table 4 method grades: first matching row wins; no match is 'ungraded' with a reason."""

import pytest

from poseops.errors import DataError
from poseops.metrics import TABLE4_CITATION, TABLE4_GRADES, method_grade


@pytest.mark.parametrize(
    "ap,latency,grade",
    [
        (94.4, 213.4, "Professional"),  # VMHPE, as the paper states
        (92.1, 213.1, "Professional"),  # CID
        (82.7, 46.3, "Practical"),  # YOLOXPose-S
        (81.5, 67.5, "Practical"),  # YOLOXPose-L
        (90.0, 90.0, "Practical"),  # 90 is not "> 90"
        (80.0, 90.0, "Practical"),  # 80 is in both 80-90 and 70-80: the first row wins
        (80.0, 120.0, "Basic guidance"),
        (73.4, 140.0, "Basic guidance"),
        (50.0, 400.0, "Needs optimization"),
    ],
)
def test_grades_in_table_order(ap, latency, grade):
    assert method_grade(ap, latency)["grade"] == grade


def test_dekr_fits_no_grade():
    result = method_grade(92.1, 336.1)  # DEKR: accurate but slower than every row allows
    assert result["grade"] == "ungraded"
    assert (
        "336.1" in result["reason"]
        and "Professional" in result["reason"]
        and "< 250 ms" in result["reason"]
    )


@pytest.mark.parametrize("ap,latency", [(85.0, 120.0), (60.0, 100.0), (75.0, 150.0)])
def test_gaps_of_the_table_are_ungraded(ap, latency):
    assert method_grade(ap, latency)["grade"] == "ungraded"


def test_table_is_data_with_citation():
    assert [row["grade"] for row in TABLE4_GRADES] == [
        "Professional",
        "Practical",
        "Basic guidance",
        "Needs optimization",
    ]
    assert "Table 4" in TABLE4_CITATION
    assert method_grade(94.4, 213.4)["protocol"]["citation"] == TABLE4_CITATION


def test_bad_grade_inputs():
    with pytest.raises(DataError, match="ap_percent"):
        method_grade(float("nan"), 100.0)
    with pytest.raises(DataError, match="ap_percent"):
        method_grade(120.0, 100.0)
    with pytest.raises(DataError, match="latency_ms"):
        method_grade(90.0, -1.0)
