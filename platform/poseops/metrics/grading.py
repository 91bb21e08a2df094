"""The method grade of Zhang, He, Wu, 2025, "VMHPE" (Table 4): AP and inference time -> a grade for virtual maintenance use.

Rules are checked in table order and the first match wins; no match gives "ungraded" with the reason.
The table's latency bounds do not grow with the grade, so some methods fit none (DEKR: 92.1 AP at
336.1 ms). The table is kept as data, as printed, and never "fixed".
"""

from __future__ import annotations

import math

from poseops.errors import DataError

TABLE4_CITATION = (
    "Zhang, He, Wu, 'VMHPE: Human Pose Estimation for Virtual Maintenance Tasks' (2025), Table 4: "
    "Classification standards for human pose estimation methods in virtual maintenance scenarios"
)

# (grade, AP range in %, latency rule in ms). Ranges are read inclusively where the paper writes
# "a-b"; ">" and "<" are strict. Order matters: first match wins.
TABLE4_GRADES: tuple[dict, ...] = (
    {"grade": "Professional", "ap": (">", 90.0), "latency_ms": ("<", 250.0),
     "use": "high-precision maintenance training and assessment"},
    {"grade": "Practical", "ap": ("between", 80.0, 90.0), "latency_ms": ("<", 100.0),
     "use": "general maintenance training"},
    {"grade": "Basic guidance", "ap": ("between", 70.0, 80.0), "latency_ms": ("<", 150.0),
     "use": "simple maintenance action guidance"},
    {"grade": "Needs optimization", "ap": ("<", 70.0), "latency_ms": (">", 150.0),
     "use": "requires further improvement"},
)


def _holds(rule: tuple, value: float) -> bool:
    op, *bounds = rule
    if op == ">":
        return value > bounds[0]
    if op == "<":
        return value < bounds[0]
    if op == "between":
        return bounds[0] <= value <= bounds[1]
    raise ValueError(f"unknown rule {rule!r}")


def _describe(rule: tuple, unit: str) -> str:
    op, *bounds = rule
    return f"{bounds[0]:g}-{bounds[1]:g}{unit}" if op == "between" else f"{op} {bounds[0]:g}{unit}"


def method_grade(ap_percent: float, latency_ms: float, table: tuple[dict, ...] = TABLE4_GRADES) -> dict:
    """Grade a method by COCO AP in percent (0-100) and inference time per image in ms.

    Returns `{"grade", "reason", "protocol"}`; grade is "ungraded" when no row matches.
    """
    for name, value, low, high in (("ap_percent", ap_percent, 0.0, 100.0), ("latency_ms", latency_ms, 0.0, math.inf)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
            raise DataError(f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}")
    protocol = {"table": "Zhang, He, Wu, 2025, VMHPE, Table 4", "citation": TABLE4_CITATION,
                "rule": "rows checked in order, first match wins", "ap_percent": float(ap_percent),
                "latency_ms": float(latency_ms)}
    misses = []
    for row in table:
        ap_ok, latency_ok = _holds(row["ap"], ap_percent), _holds(row["latency_ms"], latency_ms)
        if ap_ok and latency_ok:
            reason = (f"AP {ap_percent:g} is {_describe(row['ap'], '%')} and latency {latency_ms:g} ms is "
                      f"{_describe(row['latency_ms'], ' ms')}")
            return {"grade": row["grade"], "reason": reason, "protocol": protocol}
        failed = [f"AP {_describe(row['ap'], '%')}"] * (not ap_ok) + [
            f"latency {_describe(row['latency_ms'], ' ms')}"] * (not latency_ok)
        misses.append(f"{row['grade']}: needs {' and '.join(failed)}")
    reason = (f"AP {ap_percent:g}% at {latency_ms:g} ms fits no row of Table 4 ("
              + "; ".join(misses) + ")")
    return {"grade": "ungraded", "reason": reason, "protocol": protocol}
