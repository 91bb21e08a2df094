"""POST /v1/<family>/predict for 2D -> 3D lifting families (task `lifting_sequence`): JSON 2D tracks in,
root-relative 3D out.

    {"keypoints": [[[x, y, score] x 17] x T], "image_size": [w, h], "skeleton": "coco17" | "h36m17"}
    -> {"model": {name, version}, "joints": [...], "keypoints_3d": [[x, y, z] x 17], "frame": centre,
        "units": ...}   (a seq2seq model answers "frames": [[[x, y, z] x 17] x T] instead)

Limits: 1 <= T <= MAX_FRAMES, 17 joints of 3 finite numbers each, a positive image size; anything else
is a 422 naming the field. The route is registered for each served family of that task, ahead of the
image route, so the same path keeps one meaning per family.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from poseops.config import ServeParams
from poseops.errors import RequestError

MAX_FRAMES = 243  # the longest window of the paper's family (T = 243, Table IX's TCN baseline)
NUM_JOINTS = 17


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keypoints: list[list[list[float]]] = Field(
        description="T frames of 17 [x, y, score] in image pixels",
        min_length=1,
        max_length=MAX_FRAMES,
    )
    image_size: tuple[float, float] = Field(description="[width, height] of the images, px")
    skeleton: Literal["coco17", "h36m17"] = "h36m17"

    @field_validator("keypoints")
    @classmethod
    def _shape_and_finite(cls, frames: list[list[list[float]]]) -> list[list[list[float]]]:
        for t, frame in enumerate(frames):
            if len(frame) != NUM_JOINTS:
                raise ValueError(f"frame {t}: {len(frame)} joints, expected {NUM_JOINTS}")
            for j, point in enumerate(frame):
                if len(point) != 3:
                    raise ValueError(
                        f"frame {t} joint {j}: {len(point)} values, expected [x, y, score]"
                    )
                if not all(math.isfinite(v) for v in point):
                    raise ValueError(f"frame {t} joint {j}: not finite")
        return frames

    @field_validator("image_size")
    @classmethod
    def _positive(cls, size: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(v) and v > 0 for v in size):
            raise ValueError(f"must be two positive finite numbers, got {list(size)}")
        return size


def parse_lift_request(body: bytes) -> LiftRequest:
    """The validated request, or RequestError 422 naming the field."""
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(422, f"body: not JSON ({exc})") from None
    try:
        return LiftRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(422, f"{where}: {first['msg']}") from None


def lift_body(predictor: Any, request: LiftRequest) -> dict[str, Any]:
    """The whole response body: {"model": {name, version}, **the predictor's lifted pose}."""
    from poseops.serve import model_info, to_jsonable

    out = predictor.lift(request.keypoints, request.image_size, request.skeleton)
    return {"model": model_info(predictor), **to_jsonable(out)}


def lift_router(families: list[str], clients: Any, limits: ServeParams) -> APIRouter:
    """POST /v1/<family>/predict (JSON tracks) for each lifting family in `families`."""
    from poseops.serve.ingress import read_body

    router = APIRouter()

    def add(family: str) -> None:
        @router.post(f"/v1/{family}/predict", summary=f"{family}: 3D pose of a 2D track")
        async def lift(request: Request) -> dict[str, Any]:
            body = await read_body(request, limits)
            parsed = await run_in_threadpool(parse_lift_request, body)
            return await clients[family].lift(parsed)

    for family in families:
        add(family)
    return router
