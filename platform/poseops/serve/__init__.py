"""Serving: a FastAPI ingress on Ray Serve in front of one deployment per model family.

    HTTP  --ingress (limits, decoding: images.py)-->  FamilyModel replica (Predictor)  --> JSON

A family is served through a `Predictor`: any object with `name`, `version` and `predict`. The
Serve deployment of a family is built from a zero-argument *loader* (importable and picklable, e.g.
a `functools.partial` of a module-level function) so that the model loads inside its replica.

This package's `__init__` stays light (no Ray, no FastAPI): import `poseops.serve.app` to build an
application and `poseops.serve.runner` to run one.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

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


__all__ = ["Box", "Predictor", "model_info", "predict_body", "to_jsonable"]
