"""Action assessment: grade a trainee's keypoint sequence against an expert's.

    assess(reference [T, K, 2|3], trial [T', K, 2|3], task) -> Assessment (similarity 0-100, grade, ...)

Pure functions over keypoint sequences (`core`), the paper's grading standard as data (`grades`),
reports a trainer can read (`report`), synthetic expert and trainee performances (`synthetic`) and
keypoints from video through a pose model (`video`). Zhang, He, Wu (2025), "VMHPE: Human Pose
Estimation for Virtual Maintenance Tasks", Section 4.4 and Tables 7-9.
"""

from poseops.assess.angles import TASKS
from poseops.assess.core import AssessInputError, Assessment, ChainResult, FrameResult, assess
from poseops.assess.grades import GRADES, LEVELS, grade

__all__ = [
    "TASKS",
    "GRADES",
    "LEVELS",
    "Assessment",
    "AssessInputError",
    "ChainResult",
    "FrameResult",
    "assess",
    "grade",
]
