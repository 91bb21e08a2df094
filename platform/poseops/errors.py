"""Errors a user can cause. Each message names the file, record or field at fault.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""


class PoseopsError(Exception):
    """Base class for every error caused by a user's input or environment."""


class ConfigError(PoseopsError):
    """A malformed or inconsistent `params.yaml`, profile or model configuration."""


class DataError(PoseopsError):
    """Missing, corrupt or inconsistent captures, annotations or datasets."""


class CheckpointError(PoseopsError):
    """A missing or incomplete checkpoint (no manifest, missing weights)."""


class GateRefused(PoseopsError):
    """A promotion gate refused a model: names the metric, its value and the threshold."""

    def __init__(self, family: str, metric: str, value: float, threshold: float):
        self.family, self.metric, self.value, self.threshold = family, metric, value, threshold
        super().__init__(
            f"promotion of {family!r} refused: {metric} = {value:.4f} is below the gate "
            f"threshold {threshold:.4f}"
        )

    def __reduce__(self):  # picklable across Ray processes
        return (type(self), (self.family, self.metric, self.value, self.threshold))


class RequestError(PoseopsError):
    """A bad request to the scoring endpoint; carries the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)

    def __reduce__(self):  # picklable across Ray processes
        return (type(self), (self.status, str(self)))
