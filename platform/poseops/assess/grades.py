"""The paper's grading standard and its reported figures, as data with their citation.

Zhang, He, Wu (2025), "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks":
Table 7 (key angle chains, professional vs ordinary operators), Table 8 (four assessment levels by
skeletal-topology similarity and key-angle-chain fluctuation) and Table 9 (work performance per
similarity band).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = (
    'Zhang S., He H., Wu Y. (2025). "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks", '
    "published 29 August 2025"
)


@dataclass(frozen=True)
class Level:
    """One row of Table 8: a grade with its similarity floor (%) and fluctuation ceiling (deg)."""

    name: str
    min_similarity: float  # similarity >= this (and below the next level's floor)
    max_fluctuation_deg: float  # key angle chain fluctuation <= this (inf: no bound)
    description: str


# Table 8 (Zhang, He, Wu 2025): >=90 professional, 80-89 proficient, 70-79 qualified, <70 needs
# improvement; fluctuation <=10, <=15, <=20, >20 degrees. Best level first.
LEVELS: tuple[Level, ...] = (
    Level(
        "Professional",
        90.0,
        10.0,
        "highly conforms to professional standards, continuous movements",
    ),
    Level(
        "Proficient",
        80.0,
        15.0,
        "basically meets the standard, natural transitions; details need optimisation",
    ),
    Level(
        "Qualified",
        70.0,
        20.0,
        "generally correct, some instability; standardisation needs improvement",
    ),
    Level(
        "Needs improvement",
        0.0,
        float("inf"),
        "obvious deviations, discontinuous movements; focused guidance",
    ),
)
GRADES: tuple[str, ...] = tuple(level.name for level in LEVELS)
TABLE8 = f"{PAPER}, Table 8"


def grade_by_similarity(similarity: float) -> str:
    """Table 8's level of a similarity in percent: [90, 100], [80, 90), [70, 80), [0, 70)."""
    return next(level.name for level in LEVELS if similarity >= level.min_similarity)


def grade_by_fluctuation(fluctuation_deg: float) -> str:
    """Table 8's level of a key-angle-chain fluctuation: <=10, <=15, <=20, >20 degrees."""
    return next(level.name for level in LEVELS if fluctuation_deg <= level.max_fluctuation_deg)


def grade(
    similarity: float, fluctuation_deg: float | None = None, cap_by_fluctuation: bool = False
) -> str:
    """The grade of a similarity; with `cap_by_fluctuation`, no better than the fluctuation's level."""
    by_similarity = grade_by_similarity(similarity)
    if not cap_by_fluctuation or fluctuation_deg is None:
        return by_similarity
    by_fluctuation = grade_by_fluctuation(fluctuation_deg)
    return GRADES[max(GRADES.index(by_similarity), GRADES.index(by_fluctuation))]


# Table 7 (Zhang, He, Wu 2025): key angle chain per task, professional and ordinary operators'
# angles (mean, SD in degrees) and the similarity score the paper reports for ordinary operators.
@dataclass(frozen=True)
class ChainFigures:
    task: str
    chain: str
    expert_deg: tuple[float, float]
    ordinary_deg: tuple[float, float]
    similarity: float

    @property
    def offset_deg(self) -> float:
        """Ordinary minus professional mean angle."""
        return round(self.ordinary_deg[0] - self.expert_deg[0], 3)


TABLE7: dict[str, ChainFigures] = {
    row.task: row
    for row in (
        ChainFigures("TO", "Wrist-Elbow-Shoulder", (75.2, 12.3), (82.4, 15.3), 88.5),
        ChainFigures("PC", "Trunk-Hip-Knee", (42.7, 9.8), (55.8, 14.2), 82.3),
        ChainFigures("CT", "Two-hand coordination symmetry", (88.3, 14.2), (95.8, 18.2), 85.7),
        ChainFigures("CR", "Squatting support chain", (78.5, 12.8), (85.3, 14.8), 84.2),
        ChainFigures("PF", "Trunk forward lean", (42.7, 10.2), (52.4, 13.5), 83.6),
    )
}
TABLE7_SOURCE = f"{PAPER}, Table 7"


# Table 9 (Zhang, He, Wu 2025): operators per similarity band and their work performance (mean, SD).
@dataclass(frozen=True)
class BandFigures:
    band: str
    operators: int
    minutes_per_task: tuple[float, float]
    error_rate_pct: tuple[float, float]
    skill_score: tuple[float, float]
    supervisor_kappa: float


TABLE9: tuple[BandFigures, ...] = (
    BandFigures(">=90", 5, (12.4, 2.1), (2.3, 0.8), (94.5, 3.2), 0.91),
    BandFigures("80-89", 7, (17.6, 3.2), (5.7, 1.4), (85.7, 4.5), 0.84),
    BandFigures("70-79", 5, (25.3, 4.5), (12.4, 2.8), (76.2, 5.3), 0.77),
    BandFigures("<70", 3, (38.7, 6.3), (23.2, 4.6), (62.8, 7.1), 0.82),
)
TABLE9_SOURCE = f"{PAPER}, Table 9"
