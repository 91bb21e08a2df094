"""Build the Serve application: one `FamilyModel` deployment per family behind one `Ingress`.

    build_app({"handmle": loader}, {"handmle": FamilyServe()}, ServeParams()) -> serve.Application

A loader is a zero-argument callable returning a `Predictor`; it is pickled to the replicas and
called there (in `FamilyModel.__init__`), so the model's weights load inside the replica process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ray import serve

from poseops.config import AssessParams, FamilyServe, ServeParams
from poseops.errors import ConfigError
from poseops.serve import Box, Predictor, model_info, predict_body
from poseops.serve.ingress import Ingress

Loader = Callable[[], Predictor]


@serve.deployment(graceful_shutdown_wait_loop_s=0.25)
class FamilyModel:
    """One family's model in a Serve replica: loads it once, then answers predict/info calls."""

    def __init__(self, family: str, loader: Loader):
        self.family = family
        self.predictor = loader()
        if not isinstance(self.predictor, Predictor):
            raise TypeError(
                f"family {family!r}: the loader returned {type(self.predictor).__name__}, not a Predictor"
            )

    def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]:
        """[H, W, 3] uint8 BGR image (+ box) -> {"model": {name, version}, **family fragment}."""
        return predict_body(self.predictor, image_bgr, box_xywh)

    def info(self) -> dict[str, str]:
        return model_info(self.predictor)

    def lift(self, request: Any) -> dict[str, Any]:
        """A lifting family's JSON 2D track (serve.lift.LiftRequest) -> {"model", **3D pose}."""
        from poseops.serve.lift import lift_body

        return lift_body(self.predictor, request)


def family_deployment_name(family: str) -> str:
    return f"family-{family}"


def build_app(
    loaders: Mapping[str, Loader],
    family_serve: Mapping[str, FamilyServe],
    limits: ServeParams,
    assess: AssessParams | None = None,
) -> serve.Application:
    """The Serve application: `Ingress` holding a handle to each family's `FamilyModel`.

    `family_serve[family]` gives the replica count and fractional CPUs; a family without an entry
    gets `FamilyServe()`'s defaults.
    """
    if not loaders:
        raise ConfigError("serve: no families to serve (params.yaml families is empty)")
    handles = {}
    for family, loader in loaders.items():
        options = family_serve.get(family, FamilyServe())
        handles[family] = FamilyModel.options(
            name=family_deployment_name(family),
            num_replicas=options.num_replicas,
            ray_actor_options={"num_cpus": options.num_cpus},
        ).bind(family, loader)
    return Ingress.bind(handles, limits, assess)  # assess: POST /v1/assess's scoring settings
