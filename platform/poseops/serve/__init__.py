"""Serving: a FastAPI ingress on Ray Serve in front of one deployment per model family.

    HTTP  --ingress (limits, decoding: images.py)-->  FamilyModel replica (Predictor)  --> JSON

A family is served through a `Predictor`: any object with `name`, `version` and `predict`. Its
versions come from a `ModelSource` (picklable: it travels to the replicas): `resolve` turns what a
request asks for (an alias such as `champion`, or a version number) into a version id, and `load`
builds that version's predictor inside a replica. `RegistrySource` (poseops.deploy) reads the MLflow
registry; `FixedSource` wraps a zero-argument loader of one predictor (tests, a local checkpoint).

This package's `__init__` stays light (no Ray, no FastAPI): import `poseops.serve.app` to build an
application and `poseops.serve.runner` to run one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from poseops.errors import RequestError

Box = tuple[float, float, float, float]
"""A person/hand box in source-image pixels: (x, y, width, height), x/y the top-left corner."""


@runtime_checkable
class Predictor(Protocol):
    """What a family serves. `predict` answers the family's fragment of the response body.

    `image_bgr` is [H, W, 3] uint8 (OpenCV's BGR order); `box_xywh` is None for "the whole image".
    The fragment is JSON-able (numpy arrays are converted by `predict_body`), in source-image pixels:
    hand families answer {"keypoints": [[x, y, score] x K]}; multi-person ones {"people": [...]}.
    """

    name: str
    version: str

    def predict(self, image_bgr: np.ndarray, box_xywh: Box | None) -> dict[str, Any]: ...


DEFAULT_ALIAS = "champion"


@runtime_checkable
class ModelSource(Protocol):
    """Where a family's versions come from. Both methods may block (registry calls)."""

    def resolve(self, alias_or_version: str) -> str:
        """The version id an alias or version number stands for now; RequestError(404) if none."""
        ...

    def load(self, version: str) -> Predictor:
        """The predictor of `version` (an id `resolve` returned), built in the calling process."""
        ...


class FixedSource:
    """One predictor from a zero-argument loader, whatever version is asked for by alias; asking for a
    version number, or an alias other than the default, is a 404 (it has no registry)."""

    VERSION = "fixed"

    def __init__(self, loader: Callable[[], Predictor]):
        self.loader = loader

    def resolve(self, alias_or_version: str) -> str:
        if alias_or_version != DEFAULT_ALIAS:
            raise RequestError(
                404,
                f"model version {alias_or_version!r}: this service has one model per family "
                f"(no registry); leave X-Model-Version and X-Model-Alias out",
            )
        return self.VERSION

    def load(self, version: str) -> Predictor:
        return self.loader()


def model_info(predictor: Predictor) -> dict[str, str]:
    """{"name", "version"} of a predictor, as the response's `model` field carries it."""
    return {"name": str(predictor.name), "version": str(predictor.version)}


def predict_body(
    predictor: Predictor, image_bgr: np.ndarray, box_xywh: Box | None
) -> dict[str, Any]:
    """The whole response body of one prediction: {"model": {name, version}, **fragment}."""
    fragment = predictor.predict(image_bgr, box_xywh)
    if not isinstance(fragment, dict):
        raise TypeError(
            f"predictor {predictor.name!r} returned {type(fragment).__name__}, expected a dict"
        )
    if "model" in fragment:
        raise TypeError(
            f"predictor {predictor.name!r} returned a 'model' key; that key is the server's"
        )
    return {"model": model_info(predictor), **to_jsonable(fragment)}


def to_jsonable(value: Any) -> Any:
    """Numpy arrays and scalars inside dicts/lists/tuples become plain Python lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    return value


__all__ = [
    "DEFAULT_ALIAS",
    "Box",
    "FixedSource",
    "ModelSource",
    "Predictor",
    "model_info",
    "predict_body",
    "to_jsonable",
]
