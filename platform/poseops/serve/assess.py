"""`POST /v1/assess`: grade a trial keypoint sequence against a reference (poseops.assess).

Mounted on the ingress's FastAPI app (`api.include_router(assess_router(limits))`). The JSON body:

    {"task": "TO", "reference": {"keypoints": [[[x, y, s] x K] x T], "skeleton": "coco17"} | [[[...]]],
     "trial": ..., "skeleton": "coco17", "sigma_deg": 15.0, "options": {...}, "curves": false}

`options` are `poseops.config.ScoringParams` fields. Or two clips as `multipart/form-data`: files
`reference` and `trial` (MP4 or any video OpenCV reads), fields `task`, optional `family` (the served
whole-image body family that predicts the keypoints, default vmhpe), `frame_step`, `skeleton`,
`options` (JSON) and `curves`; the person followed through a clip is chosen as in `poseops.assess.video`.

Limits: the body size of `ServeParams` (413), `AssessParams.max_frames` per sequence (413) and
`ServeParams.max_pixels` per video frame (413); unusable sequences or clips, an unknown task,
skeleton or option answer 422 naming the field; a family not served 404.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from poseops.config import AssessParams, ServeParams
from poseops.errors import PoseopsError, RequestError
from poseops.serve.images import check_body_size, check_declared_length, check_pixels, read_form

CLIP_FIELDS = (
    "task",
    "reference",
    "trial",
    "family",
    "frame_step",
    "skeleton",
    "options",
    "curves",
)


class AssessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="TO, PF, CR, CT or PC")
    reference: Any = Field(
        description='expert: {"keypoints": [[[x, y, score] x K] x T], "skeleton": name} or the list'
    )
    trial: Any = Field(description="trainee, same form")
    skeleton: str = "coco17"
    sigma_deg: float | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="scoring options (ScoringParams fields)"
    )
    curves: bool = Field(False, description="include angle curves and the DTW path")


def assess_body(body: bytes, settings: AssessParams) -> dict[str, Any]:
    """The response body of one assessment request; RequestError (413, 422) for what cannot be scored."""
    from poseops.assess import assess
    from poseops.assess.sequences import check_same_skeleton, sequence_from_json

    try:
        request = AssessRequest.model_validate(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # bytes that are not UTF-8 JSON
        raise RequestError(422, f"request body: not valid JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise RequestError(422, f"request body: {problems}") from None
    sequences = []
    for label in ("reference", "trial"):
        value = getattr(request, label)
        frames = value.get("keypoints") if isinstance(value, dict) else value
        if isinstance(frames, list) and len(frames) > settings.max_frames:
            raise RequestError(
                413, f"{label}: {len(frames)} frames is over the limit of {settings.max_frames}"
            )
        try:
            sequences.append(sequence_from_json(value, label, settings.max_frames))
        except PoseopsError as exc:
            raise RequestError(422, str(exc)) from None
    options = {**settings.scoring.model_dump(), **request.options}
    sigma = request.sigma_deg if request.sigma_deg is not None else options.pop("sigma_deg")
    options.pop("sigma_deg", None)
    try:
        skeleton = check_same_skeleton(sequences[0][1], sequences[1][1], request.skeleton)
        result = assess(
            sequences[0][0],
            sequences[1][0],
            request.task,
            skeleton=skeleton,
            sigma_deg=sigma,
            **options,
        )
    except PoseopsError as exc:
        raise RequestError(422, str(exc)) from None
    return result.to_dict(curves=request.curves)


def read_clip_form(content_type: str, body: bytes, limits: ServeParams) -> dict[str, bytes]:
    """multipart/form-data -> {field: bytes} of `CLIP_FIELDS`; 422 on a malformed or incomplete form."""
    parts = read_form(content_type, body, limits, CLIP_FIELDS)
    for required in ("task", "reference", "trial"):
        if not parts.get(required):
            raise RequestError(422, f"form field {required!r}: missing")
    return parts


async def clip_keypoints(
    data: bytes,
    label: str,
    client: Any,
    num_keypoints: int,
    frame_step: int,
    limits: ServeParams,
    settings: AssessParams,
) -> list:
    """The followed person's [T, K, 3] keypoints (as lists) of an uploaded clip, via the family's client."""
    from poseops.assess.video import Follower, sampled_frames

    handle, path = tempfile.mkstemp(suffix=".mp4")
    frames = None
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        follower = Follower(num_keypoints, settings.video.min_score)
        frames = sampled_frames(path, frame_step, settings.max_frames)
        while True:
            try:
                image = await run_in_threadpool(next, frames, None)
            except PoseopsError as exc:
                status = 413 if "more than" in str(exc) else 422
                raise RequestError(
                    status, str(exc).replace(path, f"form field {label!r}")
                ) from None
            if image is None:
                break
            check_pixels(image.shape[1], image.shape[0], limits)
            follower.add(await client.predict(image, None))
        if not follower.frames:
            raise RequestError(
                422, f"form field {label!r}: not a video OpenCV can read, or no frames"
            )
        return follower.sequence(label).tolist()
    finally:
        if frames is not None:
            frames.close()
        os.unlink(path)


async def assess_clips(
    content_type: str,
    body: bytes,
    limits: ServeParams,
    settings: AssessParams,
    clients: Mapping[str, Any],
) -> dict[str, Any]:
    from poseops.skeletons import get_skeleton

    parts = await run_in_threadpool(read_clip_form, content_type, body, limits)
    text = {
        k: v.decode("utf-8", errors="replace")
        for k, v in parts.items()
        if k not in ("reference", "trial")
    }
    family = text.get("family", "vmhpe")
    if family not in clients:
        raise RequestError(
            404, f"family {family!r}: not served (served: {', '.join(sorted(clients)) or 'none'})"
        )
    try:
        frame_step = int(text.get("frame_step", settings.video.frame_step))
        options = json.loads(text.get("options", "{}"))
        skeleton = text.get("skeleton", "coco17")
        num_keypoints = get_skeleton(skeleton).num_keypoints
    except (ValueError, KeyError) as exc:
        raise RequestError(422, f"form fields frame_step, options or skeleton: {exc}") from None
    if frame_step < 1:
        raise RequestError(422, f"form field 'frame_step': must be >= 1, got {frame_step}")
    sequences = {}
    for label in ("reference", "trial"):
        sequences[label] = await clip_keypoints(
            parts[label], label, clients[family], num_keypoints, frame_step, limits, settings
        )
    request = {
        "task": text["task"],
        "skeleton": skeleton,
        "options": options,
        "curves": text.get("curves", "false").lower() in ("1", "true", "yes"),
        **sequences,
    }
    return await run_in_threadpool(assess_body, json.dumps(request).encode(), settings)


def assess_router(
    limits: ServeParams,
    settings: AssessParams | None = None,
    clients: Mapping[str, Any] | None = None,
) -> APIRouter:
    """The `/v1/assess` route; `clients` (family -> client with `predict(image_bgr, box)`) serve clip uploads."""
    settings = settings or AssessParams()
    clients = clients or {}
    router = APIRouter()

    @router.post(
        "/v1/assess",
        summary="Grade a trial against a reference (keypoint sequences or two clips)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": AssessRequest.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["task", "reference", "trial"],
                            "properties": {f: {"type": "string"} for f in CLIP_FIELDS},
                        }
                    },
                },
            }
        },
    )
    async def assess_route(request: Request) -> dict[str, Any]:
        check_declared_length(request.headers.get("content-length"), limits)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_body_size(size, limits)
            chunks.append(chunk)
        body, content_type = b"".join(chunks), request.headers.get("content-type") or ""
        if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
            return await assess_clips(content_type, body, limits, settings, clients)
        return await run_in_threadpool(assess_body, body, settings)

    return router
