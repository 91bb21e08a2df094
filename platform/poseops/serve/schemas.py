"""Pydantic models of the HTTP API: the JSON request form and every response (they feed /docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PredictJsonRequest(BaseModel):
    """The JSON form of a prediction request (the other form is multipart with fields image, box)."""

    model_config = ConfigDict(extra="forbid")

    image_b64: str = Field(
        description="the encoded image file (PNG, JPEG, WebP, BMP, TIFF), base64; "
        "a data: URL prefix is accepted"
    )
    box: list[float] | str | None = Field(
        None, description="[x, y, w, h] in image pixels (or 'x,y,w,h'); omitted: the whole image"
    )


class ModelInfo(BaseModel):
    name: str = Field(description="registered model name")
    version: str = Field(description="registered model version (or checkpoint id)")


class FamilyModelInfo(ModelInfo):
    family: str


class Person(BaseModel):
    model_config = ConfigDict(extra="allow")

    keypoints: list[tuple[float, float, float]] = Field(
        description="[x, y, score] per keypoint, image pixels"
    )
    score: float | None = Field(
        None, description="the person's score (mean keypoint score), best first"
    )
    box: tuple[float, float, float, float] | None = None
    track_id: int | None = None


class PredictResponse(BaseModel):
    """`model` plus the family's fragment: `keypoints` (one hand) or `people` (several persons)."""

    model_config = ConfigDict(extra="allow")

    model: ModelInfo
    keypoints: list[tuple[float, float, float]] | None = Field(
        None,
        description="[x, y, score] per keypoint in source-image pixels (single-instance families)",
    )
    people: list[Person] | None = Field(
        None, description="one entry per person (multi-person families)"
    )


class HealthResponse(BaseModel):
    status: str = "ok"
    families: list[str]


class ModelsResponse(BaseModel):
    models: list[FamilyModelInfo]


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, naming the field at fault")
