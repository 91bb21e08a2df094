"""Build the Serve application: one `FamilyModel` deployment per family behind one `Ingress`.

    build_app({"handmle": source}, {"handmle": FamilyServe()}, ServeParams()) -> serve.Application

A family's `ModelSource` is pickled to its replicas; a replica loads the versions asked of it with
`@serve.multiplexed` (each request names its version id: the ingress resolves `X-Model-Version`,
`X-Model-Alias` or the default alias through the source), so a replica holds up to
`MAX_VERSIONS_PER_REPLICA` versions at once and Serve routes a version's requests to the replicas that
have it. Requests are grouped by `@serve.batch` (Serve splits batches by model id, so one batch is
one version); the batch limits come through `user_config`, so a redeploy with new limits reconfigures
the replicas without restarting them. A zero-argument loader (the older form) is wrapped in a
`FixedSource`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ray import serve
from ray.serve.metrics import Histogram

from poseops.config import AssessParams, FamilyServe, ServeParams
from poseops.errors import ConfigError, PoseopsError
from poseops.serve import (
    DEFAULT_ALIAS,
    Box,
    FixedSource,
    ModelSource,
    Predictor,
    model_info,
    predict_body,
)
from poseops.serve.ingress import Ingress

log = logging.getLogger(__name__)
Loader = Callable[[], Predictor]
MAX_VERSIONS_PER_REPLICA = 3  # a champion, a challenger and the version a rollback returns to
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def predict_many(
    predictor: Predictor, images: Sequence[np.ndarray], boxes: Sequence[Box | None]
) -> list[dict[str, Any] | PoseopsError]:
    """Response bodies of a batch; a request's own error (a PoseopsError) is its item, not the batch's.

    A predictor with `predict_batch(images, boxes) -> [fragment]` answers the batch in one call;
    otherwise each image is predicted in turn.
    """
    batch_fn = getattr(predictor, "predict_batch", None)
    if batch_fn is not None:
        try:
            fragments = batch_fn(list(images), list(boxes))
        except PoseopsError:
            pass  # find whose request it was: one at a time below
        else:
            return [predict_body(_Answered(predictor, f), None, None) for f in fragments]
    bodies: list[dict[str, Any] | PoseopsError] = []
    for image, box in zip(images, boxes):
        try:
            bodies.append(predict_body(predictor, image, box))
        except PoseopsError as exc:
            bodies.append(exc)
    return bodies


class _Answered:
    """A predictor whose answer is already known (lets predict_body check and convert a batch's item)."""

    def __init__(self, predictor: Predictor, fragment: dict[str, Any]):
        self.name, self.version, self.fragment = predictor.name, predictor.version, fragment

    def predict(self, image_bgr, box_xywh):
        return self.fragment


@serve.deployment(graceful_shutdown_wait_loop_s=0.25)
class FamilyModel:
    """One family's versions in a Serve replica; answers batched predict calls and info calls."""

    async def __init__(self, family: str, source: ModelSource | Loader):
        self.family = family
        self.source = source if isinstance(source, ModelSource) else FixedSource(source)
        self.batch_sizes = Histogram(
            "poseops_batch_size",
            description="requests per forward batch, per family",
            boundaries=BATCH_SIZE_BUCKETS,
            tag_keys=("family",),
        )
        self.batch_sizes.set_default_tags({"family": family})
        # Load the default version before the replica counts as ready, so the first requests do not
        # wait for it; if the registry cannot answer now, the version loads on its first request.
        try:
            await self.get_version(await self._version_id())
        except Exception as exc:
            log.warning("family %s: default version not preloaded (%s)", family, exc)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve's user_config: {"max_batch_size", "batch_wait_timeout_s"} (applied without a restart)."""
        self.predict_batch.set_max_batch_size(int(config["max_batch_size"]))
        self.predict_batch.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    @serve.multiplexed(max_num_models_per_replica=MAX_VERSIONS_PER_REPLICA)
    async def get_version(self, version: str) -> Predictor:
        predictor = await asyncio.to_thread(self.source.load, version)
        if not isinstance(predictor, Predictor):
            raise TypeError(
                f"family {self.family!r}: version {version!r} loaded as "
                f"{type(predictor).__name__}, not a Predictor"
            )
        return predictor

    async def _version_id(self) -> str:
        """The request's version id (set by the ingress); a direct call gets the default alias's."""
        return serve.get_multiplexed_model_id() or await asyncio.to_thread(
            self.source.resolve, DEFAULT_ALIAS
        )

    async def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]:
        """[H, W, 3] uint8 BGR image (+ box) -> {"model": {name, version}, **family fragment}."""
        answer = await self.predict_batch((await self._version_id(), image_bgr, box_xywh))
        if isinstance(answer, Exception):
            raise answer
        return answer

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def predict_batch(
        self, requests: list[tuple[str, np.ndarray, Box | None]]
    ) -> list[dict[str, Any] | PoseopsError]:
        self.batch_sizes.observe(len(requests))
        answers: list[Any] = [None] * len(requests)
        for version in dict.fromkeys(version for version, _, _ in requests):
            mine = [i for i, request in enumerate(requests) if request[0] == version]
            predictor = await self.get_version(version)
            bodies = await asyncio.to_thread(
                predict_many,
                predictor,
                [requests[i][1] for i in mine],
                [requests[i][2] for i in mine],
            )
            for i, body in zip(mine, bodies):
                answers[i] = body
        return answers

    async def info(self) -> dict[str, str]:
        return model_info(await self.get_version(await self._version_id()))

    async def lift(self, request: Any) -> dict[str, Any]:
        """A lifting family's JSON 2D track (serve.lift.LiftRequest) -> {"model", **3D pose}."""
        from poseops.serve.lift import lift_body

        predictor = await self.get_version(await self._version_id())
        return await asyncio.to_thread(lift_body, predictor, request)


def family_deployment_name(family: str) -> str:
    return f"family-{family}"


def deployment_options(family: str, options: FamilyServe, limits: ServeParams) -> dict[str, Any]:
    """Serve options of a family's deployment from its params block (the Serve-status test reads
    them back from the running app)."""
    scaling: dict[str, Any] = (
        {
            "autoscaling_config": {
                "min_replicas": options.autoscaling.min_replicas,
                "max_replicas": options.autoscaling.max_replicas,
                "initial_replicas": options.num_replicas,
                "target_ongoing_requests": options.autoscaling.target_ongoing_requests,
            }
        }
        if options.autoscaling
        else {"num_replicas": options.num_replicas}
    )
    return {
        "name": family_deployment_name(family),
        "ray_actor_options": {"num_cpus": options.num_cpus},
        "max_ongoing_requests": options.max_ongoing_requests,
        "logging_config": logging_config(limits),
        "user_config": {
            "max_batch_size": options.max_batch_size,
            "batch_wait_timeout_s": options.batch_wait_timeout_s,
        },
        **scaling,
    }


def build_app(
    sources: Mapping[str, ModelSource | Loader],
    family_serve: Mapping[str, FamilyServe],
    limits: ServeParams,
    assess: AssessParams | None = None,
) -> serve.Application:
    """The Serve application: `Ingress` holding a handle to each family's `FamilyModel`.

    `family_serve[family]` gives replicas, CPUs and batching; a family without an entry gets
    `FamilyServe()`'s defaults.
    """
    if not sources:
        raise ConfigError("serve: no families to serve (params.yaml families is empty)")
    sources = {
        family: source if isinstance(source, ModelSource) else FixedSource(source)
        for family, source in sources.items()
    }
    handles = {
        family: FamilyModel.options(
            **deployment_options(family, family_serve.get(family, FamilyServe()), limits)
        ).bind(family, source)
        for family, source in sources.items()
    }
    # the ingress resolves versions through the same sources; assess: POST /v1/assess's settings
    return Ingress.options(logging_config=logging_config(limits)).bind(
        handles, sources, limits, assess
    )


def logging_config(limits: ServeParams) -> dict[str, Any]:
    """Serve's LoggingConfig: JSON lines carry the request_id of the request being served."""
    return {"encoding": limits.log_encoding, "log_level": "INFO"}
