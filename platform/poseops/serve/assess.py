"""`POST /v1/assess`: grade a trial keypoint sequence against a reference (poseops.assess).

Mounted on the ingress's FastAPI app (`api.include_router(assess_router(limits))`). The JSON body:

    {"task": "TO", "reference": {"keypoints": [[[x, y, s] x K] x T], "skeleton": "coco17"} | [[[...]]],
     "trial": ..., "skeleton": "coco17", "sigma_deg": 15.0, "options": {...}, "curves": false}

`options` are `poseops.config.ScoringParams` fields. Limits: the body size of `ServeParams` (413) and
`AssessParams.max_frames` per sequence (413); unusable sequences, an unknown task, skeleton or option
answer 422 naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from poseops.config import AssessParams, ServeParams
from poseops.errors import PoseopsError, RequestError
from poseops.serve.images import check_body_size, check_declared_length


class AssessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="TO, PF, CR, CT or PC")
    reference: Any = Field(description='expert: {"keypoints": [[[x, y, score] x K] x T], "skeleton": name} or the list')
    trial: Any = Field(description="trainee, same form")
    skeleton: str = "coco17"
    sigma_deg: float | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="scoring options (ScoringParams fields)")
    curves: bool = Field(False, description="include angle curves and the DTW path")


def assess_body(body: bytes, settings: AssessParams) -> dict[str, Any]:
    """The response body of one assessment request; RequestError (413, 422) for what cannot be scored."""
    from poseops.assess import assess
    from poseops.assess.sequences import check_same_skeleton, sequence_from_json

    try:
        request = AssessRequest.model_validate(json.loads(body))
    except json.JSONDecodeError as exc:
        raise RequestError(422, f"request body: not valid JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise RequestError(422, f"request body: {problems}") from None
    sequences = []
    for label in ("reference", "trial"):
        value = getattr(request, label)
        frames = value.get("keypoints") if isinstance(value, dict) else value
        if isinstance(frames, list) and len(frames) > settings.max_frames:
            raise RequestError(413, f"{label}: {len(frames)} frames is over the limit of {settings.max_frames}")
        try:
            sequences.append(sequence_from_json(value, label, settings.max_frames))
        except PoseopsError as exc:
            raise RequestError(422, str(exc)) from None
    options = {**settings.scoring.model_dump(), **request.options}
    sigma = request.sigma_deg if request.sigma_deg is not None else options.pop("sigma_deg")
    options.pop("sigma_deg", None)
    try:
        skeleton = check_same_skeleton(sequences[0][1], sequences[1][1], request.skeleton)
        result = assess(sequences[0][0], sequences[1][0], request.task, skeleton=skeleton, sigma_deg=sigma, **options)
    except PoseopsError as exc:
        raise RequestError(422, str(exc)) from None
    return result.to_dict(curves=request.curves)


def assess_router(limits: ServeParams, settings: AssessParams | None = None) -> APIRouter:
    settings = settings or AssessParams()
    router = APIRouter()

    @router.post("/v1/assess", summary="Grade a trial keypoint sequence against a reference (similarity, grade)",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": AssessRequest.model_json_schema()}}}})
    async def assess_route(request: Request) -> dict[str, Any]:
        check_declared_length(request.headers.get("content-length"), limits)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_body_size(size, limits)
            chunks.append(chunk)
        return await run_in_threadpool(assess_body, b"".join(chunks), settings)

    return router
