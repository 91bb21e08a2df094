"""The HTTP face: a FastAPI app over one client per family, and the Ray Serve `Ingress` deployment.

Routes (OpenAPI at /docs):
    POST /v1/{family}/predict   body -> images.decode_request -> family client -> PredictResponse
    GET  /v1/models             name and version served per family
    GET  /healthz               {"status": "ok", "families": [...]}
    POST /v1/assess             two keypoint sequences -> similarity, grade, breakdown (serve/assess.py)
    POST /v1/{lifter}/predict   a lifting family's route: JSON 2D track -> 3D (serve/lift.py)

`create_api(clients, limits)` builds the app over any `FamilyClient` (an in-process `LocalClient`
in unit tests, a `HandleClient` around a Serve `DeploymentHandle` in the `Ingress` deployment).
Errors: a `RequestError` answers its own status with {"detail": message}; anything else is a server
bug: logged with its traceback and answered 500 {"detail": "internal server error"}.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayTaskError
from starlette.concurrency import run_in_threadpool

from poseops.config import AssessParams, ServeParams
from poseops.errors import PoseopsError, RequestError
from poseops.serve import Box, Predictor, model_info, predict_body
from poseops.serve.assess import assess_router
from poseops.serve.images import check_body_size, check_declared_length, decode_request
from poseops.serve.lift import lift_router
from poseops.serve.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    PredictJsonRequest,
    PredictResponse,
)

log = logging.getLogger(__name__)


class FamilyClient(Protocol):
    """How the ingress reaches one family: the whole response body, and the model's name/version."""

    async def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]: ...

    async def info(self) -> dict[str, str]: ...


class LocalClient:
    """A predictor called in this process (in a worker thread): unit tests, single-process serving."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    async def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]:
        return await run_in_threadpool(predict_body, self.predictor, image_bgr, box_xywh)

    async def info(self) -> dict[str, str]:
        return model_info(self.predictor)

    async def lift(self, request: Any) -> dict[str, Any]:
        from poseops.serve.lift import lift_body

        return await run_in_threadpool(lift_body, self.predictor, request)


class HandleClient:
    """A family deployment reached through its Serve `DeploymentHandle` (methods predict, info)."""

    def __init__(self, handle: Any):
        self.handle = handle

    async def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]:
        return await _unwrapped(self.handle.predict.remote(image_bgr, box_xywh))

    async def info(self) -> dict[str, str]:
        return await _unwrapped(self.handle.info.remote())

    async def lift(self, request: Any) -> dict[str, Any]:
        return await _unwrapped(self.handle.lift.remote(request))


async def _unwrapped(response: Any) -> Any:
    """Await a handle response; a user error raised in the replica comes back as itself."""
    try:
        return await response
    except RayTaskError as exc:
        if isinstance(exc.cause, PoseopsError):
            raise exc.cause from None
        raise


# ---------------------------------------------------------------- the FastAPI app
_ERRORS = {status: {"model": ErrorResponse} for status in (404, 413, 415, 422)}
_PREDICT_BODY = {  # the body is read raw (to enforce limits), so its forms are declared by hand
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG/JPEG/WebP/BMP/TIFF",
                        },
                        "box": {
                            "type": "string",
                            "description": "[x, y, w, h] or x,y,w,h in image pixels",
                        },
                    },
                }
            },
            "application/json": {"schema": PredictJsonRequest.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def read_body(request: Request, limits: ServeParams) -> bytes:
    """The request body, refused (413) from its Content-Length or as soon as it grows over the limit."""
    check_declared_length(request.headers.get("content-length"), limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        check_body_size(size, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def task_of(family: str) -> str | None:
    """The task of a family in the family table (None for a name it does not hold)."""
    from poseops.families import families

    found = families().get(family)
    return found.task if found is not None else None


def create_api(
    clients: Mapping[str, FamilyClient], limits: ServeParams, assess: AssessParams | None = None
) -> FastAPI:
    """The FastAPI app serving `clients` (family name -> client) under `limits`."""
    api = FastAPI(
        title="poseops",
        description="Pose estimation: one predict endpoint per model family.",
        version="1",
    )

    @api.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": str(exc)})

    @api.exception_handler(Exception)
    async def _server_bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "internal server error"})

    def client_for(family: str) -> FamilyClient:
        if family not in clients:
            raise RequestError(
                404,
                f"family {family!r}: not served (served: {', '.join(sorted(clients)) or 'none'})",
            )
        return clients[family]

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok", families=sorted(clients))

    @api.get("/v1/models", response_model=ModelsResponse)
    async def models() -> ModelsResponse:
        families = sorted(clients)
        infos = await asyncio.gather(*(clients[family].info() for family in families))
        return ModelsResponse(
            models=[{"family": family, **info} for family, info in zip(families, infos)]
        )

    lifting = [f for f in clients if task_of(f) == "lifting_sequence"]
    api.include_router(lift_router(lifting, clients, limits))  # JSON tracks (serve/lift.py), first

    @api.post(
        "/v1/{family}/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
        openapi_extra=_PREDICT_BODY,
        summary="Keypoints of one image (optionally one box of it)",
    )
    async def predict(
        family: str,
        request: Request,
        box: str | None = Query(None, description="x,y,w,h: the box, for a raw image body"),
    ) -> dict[str, Any]:
        client = client_for(family)
        body = await read_body(request, limits)
        image, box_xywh = await run_in_threadpool(
            decode_request, request.headers.get("content-type"), body, limits, box
        )
        return await client.predict(image, box_xywh)

    api.include_router(
        assess_router(limits, settings=assess, clients=clients)
    )  # POST /v1/assess (poseops.serve.assess)
    return api


# ---------------------------------------------------------------- the Serve deployment
@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    graceful_shutdown_wait_loop_s=0.25,
)
@serve.ingress()
class Ingress:
    """Holds a `DeploymentHandle` per family; the FastAPI app is built inside the replica."""

    def __init__(
        self, handles: Mapping[str, Any], limits: ServeParams, assess: AssessParams | None = None
    ):
        self.clients = {family: HandleClient(handle) for family, handle in handles.items()}
        self.limits, self.assess = limits, assess

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.clients, self.limits, self.assess)
