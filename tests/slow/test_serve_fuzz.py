"""schemathesis over the service's OpenAPI spec: generated requests on every route of the FastAPI app,
in process (ASGI, fake predictors, no Ray); no answer may be a 5xx.

A fuzz test (>= 1,000 cases, tens of seconds), hence slow; `test_every_route_was_fuzzed` checks the
case count once the per-route tests have run.
"""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from poseops.config import ServeParams
from poseops.serve.ingress import LocalClient, create_api

pytestmark = pytest.mark.slow

CASES_PER_ROUTE = 360  # /healthz has no inputs (a few cases); the other 3 routes reach 1,000+


class CornerPredictor:
    name, version = "fake", "1"

    def predict(self, image_bgr, box_xywh):
        height, width = image_bgr.shape[:2]
        x, y, w, h = box_xywh if box_xywh is not None else (0.0, 0.0, float(width), float(height))
        return {"keypoints": [[x, y, 1.0], [x + w, y + h, 1.0]]}


APP = create_api({"handmle": LocalClient(CornerPredictor())}, ServeParams(max_body_bytes=200_000))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
cases = collections.Counter()
statuses = collections.Counter()


@schema.parametrize()
@settings(
    max_examples=CASES_PER_ROUTE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_route_answers_5xx(case):
    response = case.call_and_validate(checks=[not_a_server_error])
    cases[f"{case.method} {case.path}"] += 1
    statuses[response.status_code] += 1
    assert response.status_code < 500, (case.method, case.path, response.text[:300])


def test_every_route_was_fuzzed():
    routes = {
        f"{method.upper()} {path}" for path, ops in APP.openapi()["paths"].items() for method in ops
    }
    if not routes <= set(cases):
        pytest.skip(
            f"run with the fuzz test (fuzzed {sorted(set(cases) & routes)} of {sorted(routes)})"
        )
    documented = {route: cases[route] for route in sorted(routes)}
    print(
        f"\n{sum(cases.values())} cases, on documented routes {documented}; statuses {dict(statuses)}"
    )
    assert sum(documented.values()) >= 1000
    assert min(documented.values()) >= 1
