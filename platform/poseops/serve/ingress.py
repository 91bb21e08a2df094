"""The HTTP face: a FastAPI app over one client per family, and the Ray Serve `Ingress` deployment.

Routes (OpenAPI at /docs):
    POST /v1/{family}/predict   body -> images.decode_request -> family client -> PredictResponse
    GET  /v1/models             name and version served per family
    GET  /healthz               {"status": "ok", "families": [...]}  (never needs an API key)
    POST /v1/assess             two keypoint sequences -> similarity, grade, breakdown (serve/assess.py)
    POST /v1/{lifter}/predict   a lifting family's route: JSON 2D track -> 3D (serve/lift.py)

`create_api(clients, limits)` builds the app over any `FamilyClient` (an in-process `LocalClient`
in unit tests, a `HandleClient` around a Serve `DeploymentHandle` in the `Ingress` deployment).

Versions: `X-Model-Version: 3` or `X-Model-Alias: challenger` picks a registered version; neither
means the `champion` alias. `Versions` resolves them through the family's `ModelSource`, re-reading an
alias at most every `serve.alias_poll_s`, so a promotion or rollback is served that long after it,
without a restart. The answering version is in the body (`model.version`) and the `X-Model-Version`
response header.

Errors: a `RequestError` answers its own status with {"detail": message}; a replica that died or is
overloaded answers 503 with `Retry-After` (the client retries); anything else is a server bug:
logged with its traceback and answered 500 {"detail": "internal server error"}.
Every response carries `X-Request-Id` (the client's, or a new one); with `serve.api_keys_*` set a
request needs a valid `X-API-Key` (401), with `serve.rate_limit` a client over it gets 429.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from ray import serve
from ray.exceptions import (
    NodeDiedError,
    OutOfMemoryError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from starlette.concurrency import run_in_threadpool

from poseops.config import AssessParams, ServeParams
from poseops.errors import ConfigError, PoseopsError, RequestError
from poseops.serve import (
    DEFAULT_ALIAS,
    Box,
    FixedSource,
    ModelSource,
    Predictor,
    model_info,
    predict_body,
)
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


UNAVAILABLE = (  # the service cannot answer now, but a retry can succeed: 503 + Retry-After
    RayActorError,  # a replica died or is unreachable (ActorDiedError, ActorUnavailableError)
    WorkerCrashedError,
    NodeDiedError,
    OutOfMemoryError,
    BackPressureError,  # every replica is at max_ongoing_requests with a full queue
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
RETRY_AFTER_S = 1
REQUEST_ID = "X-Request-Id"
MODEL_VERSION = "X-Model-Version"
MODEL_ALIAS = "X-Model-Alias"
API_KEY = "X-API-Key"
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


class Unavailable(PoseopsError):
    """The service cannot answer this request now (a replica died, the registry is unreachable)."""


class FamilyClient(Protocol):
    """How the ingress reaches one family: the whole response body, and the model's name/version.

    `version` is a version id from the family's `ModelSource.resolve` (None: the default alias)."""

    async def predict(
        self, image_bgr: np.ndarray, box_xywh: Box | None, version: str | None = None
    ) -> dict[str, Any]: ...

    async def info(self, version: str | None = None) -> dict[str, str]: ...


class LocalClient:
    """Versions of one family called in this process (in a worker thread): unit tests, benchmarks.

    Takes a `Predictor` (served as the only version) or a `ModelSource` (versions loaded on demand).
    """

    def __init__(self, predictor_or_source: Predictor | ModelSource):
        if isinstance(predictor_or_source, ModelSource):
            self.source: ModelSource = predictor_or_source
        else:
            self.source = FixedSource(lambda: predictor_or_source)
        self.loaded: dict[str, Predictor] = {}

    async def _predictor(self, version: str | None) -> Predictor:
        if version is None:
            version = await run_in_threadpool(self.source.resolve, DEFAULT_ALIAS)
        if version not in self.loaded:
            self.loaded[version] = await run_in_threadpool(self.source.load, version)
        return self.loaded[version]

    async def predict(
        self, image_bgr: np.ndarray, box_xywh: Box | None, version: str | None = None
    ) -> dict[str, Any]:
        predictor = await self._predictor(version)
        return await run_in_threadpool(predict_body, predictor, image_bgr, box_xywh)

    async def info(self, version: str | None = None) -> dict[str, str]:
        return model_info(await self._predictor(version))

    async def lift(self, request: Any) -> dict[str, Any]:
        from poseops.serve.lift import lift_body

        return await run_in_threadpool(lift_body, await self._predictor(None), request)


class HandleClient:
    """A family deployment reached through its Serve `DeploymentHandle` (methods predict, info); the
    version goes as the multiplexed model id, so Serve routes it to a replica that has it loaded."""

    def __init__(self, handle: Any):
        self.handle = handle

    def _for(self, version: str | None) -> Any:
        return self.handle if version is None else self.handle.options(multiplexed_model_id=version)

    async def predict(
        self, image_bgr: np.ndarray, box_xywh: Box | None, version: str | None = None
    ) -> dict[str, Any]:
        return await _unwrapped(self._for(version).predict.remote(image_bgr, box_xywh))

    async def info(self, version: str | None = None) -> dict[str, str]:
        return await _unwrapped(self._for(version).info.remote())

    async def lift(self, request: Any) -> dict[str, Any]:
        return await _unwrapped(self.handle.lift.remote(request))


async def _unwrapped(response: Any) -> Any:
    """Await a handle response; a user error raised in the replica comes back as itself, a lost
    replica as `Unavailable`."""
    try:
        return await response
    except RayTaskError as exc:
        if isinstance(exc.cause, PoseopsError):
            raise exc.cause from None
        if isinstance(exc.cause, UNAVAILABLE):
            raise Unavailable(f"model replica unavailable: {type(exc.cause).__name__}") from exc
        raise
    except UNAVAILABLE as exc:
        raise Unavailable(f"model replica unavailable: {type(exc).__name__}") from exc


class Versions:
    """What an alias or version number stands for, per family, re-read at most every `ttl_s`.

    A failed re-read keeps the last known answer (the registry may blink; serving goes on); with
    none known the request is `Unavailable` (503)."""

    def __init__(self, sources: Mapping[str, ModelSource], ttl_s: float):
        self.sources, self.ttl_s = sources, ttl_s
        self.known: dict[tuple[str, str], tuple[str, float]] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def resolve(self, family: str, wanted: str) -> str:
        key = (family, wanted)
        cached = self.known.get(key)
        if cached and time.monotonic() - cached[1] < self.ttl_s:
            return cached[0]
        async with self.locks.setdefault(key, asyncio.Lock()):
            cached = self.known.get(key)
            if cached and time.monotonic() - cached[1] < self.ttl_s:
                return cached[0]
            try:
                version = await run_in_threadpool(self.sources[family].resolve, wanted)
            except RequestError:
                self.known.pop(key, None)
                raise
            except Exception as exc:  # the registry is unreachable: keep serving what we know
                if cached is None:
                    raise Unavailable(
                        f"family {family!r}: cannot resolve {wanted!r} in the model registry now"
                    ) from exc
                log.warning(
                    "family %s: re-reading %r failed (%s); still %s", family, wanted, exc, cached[0]
                )
                version = cached[0]
            self.known[key] = (version, time.monotonic())
            return version


def wanted_version(version: str | None, alias: str | None) -> str:
    """The X-Model-Version / X-Model-Alias headers -> what to resolve (default: the champion)."""
    if version is not None and alias is not None:
        raise RequestError(422, f"{MODEL_VERSION} and {MODEL_ALIAS}: give one, not both")
    if version is not None:
        if not version.strip().isdigit():
            raise RequestError(422, f"{MODEL_VERSION}: {version!r} is not a version number")
        return str(int(version))
    if alias is not None:
        alias = alias.strip()
        if not alias or not all(c.isalnum() or c in "-_" for c in alias) or alias.isdigit():
            raise RequestError(422, f"{MODEL_ALIAS}: {alias!r} is not an alias name")
        return alias
    return DEFAULT_ALIAS


def load_api_keys(settings: ServeParams) -> frozenset[str] | None:
    """Accepted API keys from `serve.api_keys_env` / `serve.api_keys_file`; None when neither is set.
    Set but empty is a ConfigError: the service would refuse everyone."""
    if settings.api_keys_env is None and settings.api_keys_file is None:
        return None
    keys: set[str] = set()
    if settings.api_keys_env is not None:
        keys.update(os.environ.get(settings.api_keys_env, "").split(","))
    if settings.api_keys_file is not None:
        path = Path(settings.api_keys_file)
        try:
            keys.update(path.read_text().splitlines())
        except OSError as exc:
            raise ConfigError(f"serve.api_keys_file: cannot read {path} ({exc.strerror})") from None
    keys = {key.strip() for key in keys if key.strip()}
    if not keys:
        raise ConfigError(
            f"serve.api_keys_env/api_keys_file: no key found in ${settings.api_keys_env} "
            f"or {settings.api_keys_file}"
        )
    return frozenset(keys)


class RateLimit:
    """Per-client request limit (`serve.rate_limit`, e.g. '20/second'), a moving window per key.
    Held by each ingress replica: with n ingress replicas a client may get up to n times the rate."""

    def __init__(self, rate: str):
        self.item = parse_rate(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """None if `client` may go on now, else the seconds to wait."""
        if self.limiter.hit(self.item, client):
            return None
        reset, _ = self.limiter.get_window_stats(self.item, client)
        return max(1, math.ceil(reset - time.time()))


# ---------------------------------------------------------------- the FastAPI app
_ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 413, 415, 422, 429, 503)}
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


def client_key(request: Request) -> str:
    """Who a request comes from, for the rate limit: its API key, else its address."""
    key = request.headers.get(API_KEY)
    if key:
        return "key:" + key
    return "addr:" + (request.client.host if request.client else "unknown")


def create_api(
    clients: Mapping[str, FamilyClient],
    limits: ServeParams,
    assess: AssessParams | None = None,
    sources: Mapping[str, ModelSource] | None = None,
    add_request_id_header: bool = True,
) -> FastAPI:
    """The FastAPI app serving `clients` (family name -> client) under `limits`.

    `sources` resolve versions (default: each client's `.source`, as `LocalClient` has).
    `add_request_id_header`: False under Serve, whose proxy already answers `X-Request-Id`.
    """
    if sources is None:
        sources = {family: client.source for family, client in clients.items()}  # type: ignore[attr-defined]
    versions = Versions(sources, limits.alias_poll_s)
    api_keys = load_api_keys(limits)
    rate_limit = RateLimit(limits.rate_limit) if limits.rate_limit else None
    api = FastAPI(
        title="poseops",
        description="Pose estimation: one predict endpoint per model family. Send `X-Model-Version` "
        "or `X-Model-Alias` to pick a registered version (default: the champion)"
        + (", and `X-API-Key` on every route but /healthz." if api_keys else "."),
        version="1",
    )

    @api.middleware("http")
    async def _request_id_auth_and_rate(request: Request, call_next):
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        request.state.request_id = request_id
        response = None
        if request.url.path not in OPEN_PATHS:
            if api_keys is not None and not _key_ok(request.headers.get(API_KEY), api_keys):
                response = JSONResponse(
                    status_code=401,
                    content={"detail": f"missing or unknown {API_KEY} header"},
                    headers={"WWW-Authenticate": API_KEY},
                )
            elif rate_limit is not None:
                wait = rate_limit.retry_after(client_key(request))
                if wait is not None:
                    response = JSONResponse(
                        status_code=429,
                        content={"detail": f"rate limit {limits.rate_limit} exceeded"},
                        headers={"Retry-After": str(wait)},
                    )
        if response is None:
            try:
                response = await call_next(request)
            except UNAVAILABLE as exc:  # raised outside a handle call (e.g. while routing)
                response = unavailable_response(request, Unavailable(type(exc).__name__))
            except Exception as exc:  # a server bug: logged in full, answered without internals
                log.exception(
                    "unhandled error on %s %s [request %s]",
                    request.method,
                    request.url.path,
                    request_id,
                    exc_info=exc,
                )
                response = JSONResponse(
                    status_code=500, content={"detail": "internal server error"}
                )
        if add_request_id_header:
            response.headers[REQUEST_ID] = request_id
        return response

    @api.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": str(exc)})

    @api.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return unavailable_response(request, exc)

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

    @api.get("/v1/models", response_model=ModelsResponse, responses=_ERRORS)
    async def models(
        x_model_version: str | None = Header(None, description="a registered version number"),
        x_model_alias: str | None = Header(None, description="a registry alias, e.g. challenger"),
    ) -> ModelsResponse:
        families = sorted(clients)
        wanted = wanted_version(x_model_version, x_model_alias)
        ids = await asyncio.gather(*(versions.resolve(family, wanted) for family in families))
        infos = await asyncio.gather(
            *(clients[family].info(version) for family, version in zip(families, ids))
        )
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
        x_model_version: str | None = Header(None, description="a registered version number"),
        x_model_alias: str | None = Header(None, description="a registry alias, e.g. challenger"),
    ) -> JSONResponse:
        client = client_for(family)
        version = await versions.resolve(family, wanted_version(x_model_version, x_model_alias))
        body = await read_body(request, limits)
        image, box_xywh = await run_in_threadpool(
            decode_request, request.headers.get("content-type"), body, limits, box
        )
        answer = await client.predict(image, box_xywh, version)
        checked = PredictResponse.model_validate(answer).model_dump(mode="json", exclude_none=True)
        return JSONResponse(checked, headers={MODEL_VERSION: str(answer["model"]["version"])})

    api.include_router(
        assess_router(limits, settings=assess, clients=clients)
    )  # POST /v1/assess (poseops.serve.assess)
    return api


def unavailable_response(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "503 on %s %s [request %s]: %s",
        request.method,
        request.url.path,
        getattr(request.state, "request_id", "-"),
        exc,
    )
    return JSONResponse(
        status_code=503,
        content={"detail": f"{exc}; retry"},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _key_ok(given: str | None, keys: frozenset[str]) -> bool:
    return given is not None and any(secrets.compare_digest(given, key) for key in keys)


# ---------------------------------------------------------------- the Serve deployment
@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    graceful_shutdown_wait_loop_s=0.25,
)
@serve.ingress()
class Ingress:
    """Holds a `DeploymentHandle` per family; the FastAPI app is built inside the replica."""

    def __init__(
        self,
        handles: Mapping[str, Any],
        sources: Mapping[str, ModelSource],
        limits: ServeParams,
        assess: AssessParams | None = None,
    ):
        self.clients = {family: HandleClient(handle) for family, handle in handles.items()}
        self.sources, self.limits, self.assess = sources, limits, assess

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(
            self.clients, self.limits, self.assess, self.sources, add_request_id_header=False
        )
