"""Pure metric functions. Each returns its value together with its protocol
(alignment, root joint, averaging, thresholds, normaliser).

Imports only base modules (errors); pycocotools is imported inside `coco_keypoint_ap`.
"""

from poseops.metrics.coco import COCO17_SIGMAS, coco_keypoint_ap
from poseops.metrics.grading import TABLE4_CITATION, TABLE4_GRADES, method_grade
from poseops.metrics.keypoints2d import (
    auc,
    bbox_size,
    epe,
    head_box_size,
    keypoint_box_size,
    mpii_pckh,
    nme,
    pck,
    pck_curve,
    pckh,
    torso_size,
)
from poseops.metrics.pose3d import (
    acceleration_error,
    auc3d,
    mpjpe,
    mpjve,
    n_mpjpe,
    p_mpjpe,
    pck3d,
    procrustes_align,
)
from poseops.metrics.result import MetricResult
from poseops.metrics.tables import COCO17_KEYPOINTS, COCO17_TABLE5_GROUPS, epe_table, pck_table, table_markdown

__all__ = [
    "COCO17_KEYPOINTS",
    "COCO17_SIGMAS",
    "COCO17_TABLE5_GROUPS",
    "MetricResult",
    "TABLE4_CITATION",
    "TABLE4_GRADES",
    "acceleration_error",
    "auc",
    "auc3d",
    "bbox_size",
    "coco_keypoint_ap",
    "epe",
    "epe_table",
    "head_box_size",
    "keypoint_box_size",
    "method_grade",
    "mpii_pckh",
    "mpjpe",
    "mpjve",
    "n_mpjpe",
    "nme",
    "p_mpjpe",
    "pck",
    "pck3d",
    "pck_curve",
    "pck_table",
    "pckh",
    "procrustes_align",
    "table_markdown",
    "torso_size",
]
