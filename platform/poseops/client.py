"""A Python client of the poseops HTTP service (what `poseops score` uses).

    with PoseClient("http://127.0.0.1:8000", api_key=None) as client:
        body = client.predict("handmle", Path("hand.png"))           # {"model": ..., "keypoints": ...}
        body = client.predict("handmle", png_bytes, box=(10, 20, 64, 64), alias="challenger")

Retries: a 503 (a replica lost, the registry unreachable) or a 429 (rate limited) is retried after
the server's `Retry-After` (capped at `max_wait_s`), a connection error or timeout after a growing
pause; at most `retries` times, then `ServiceError`. Any other 4xx is the request's fault and is not
retried: `ServiceError` with the server's `detail`. Every call has a timeout and an `X-Request-Id`
(the same over the retries of one call, so the server's logs join them).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from poseops.errors import PoseopsError

RETRIED_STATUSES = frozenset({429, 503})
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


class ServiceError(PoseopsError):
    """A request the service refused, or that failed after every retry."""

    def __init__(self, message: str, status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.status, self.request_id = status, request_id


def retry_after_s(response: httpx.Response, default: float) -> float:
    """The `Retry-After` header in seconds (a number; an HTTP date counts as `default`)."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class PoseClient:
    """Predictions from a poseops service at `url`, with retries (see the module doc)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 5,
        max_wait_s: float = 10.0,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self.retries, self.max_wait_s, self.backoff_s = retries, max_wait_s, backoff_s
        self.retried = 0  # retries made over this client's life (a test reads it)

    def __enter__(self) -> PoseClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call with retries; returns the 2xx response or raises ServiceError."""
        headers = {"X-Request-Id": uuid.uuid4().hex, **kwargs.pop("headers", {})}
        request_id = headers["X-Request-Id"]
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response
                detail = _detail(response)
                if response.status_code not in RETRIED_STATUSES:
                    raise ServiceError(
                        f"{method} {path}: {response.status_code} {detail}",
                        response.status_code,
                        request_id,
                    )
                last = f"{response.status_code} {detail}"
                wait = retry_after_s(response, wait)
            if attempt < self.retries:
                self.retried += 1
                time.sleep(min(wait, self.max_wait_s))
        raise ServiceError(
            f"{method} {path}: no success after {self.retries + 1} attempts (last: {last})",
            None,
            request_id,
        )

    def predict(
        self,
        family: str,
        image: bytes | str | Path,
        box: tuple[float, float, float, float] | None = None,
        version: int | str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """The response body for one image (a file path or its encoded bytes)."""
        if isinstance(image, (str, Path)):
            path = Path(image)
            content_type = IMAGE_TYPES.get(path.suffix.lower())
            if content_type is None:
                raise ServiceError(f"{path}: not an image file ({', '.join(sorted(IMAGE_TYPES))})")
            data = path.read_bytes()
        else:
            data, content_type = image, "application/octet-stream"  # the server sniffs it
        headers = {"content-type": content_type}
        if version is not None:
            headers["X-Model-Version"] = str(version)
        if alias is not None:
            headers["X-Model-Alias"] = alias
        params = {"box": ",".join(f"{v:g}" for v in box)} if box is not None else None
        response = self.request(
            "POST", f"/v1/{family}/predict", content=data, headers=headers, params=params
        )
        return response.json()

    def models(self) -> list[dict[str, str]]:
        return self.request("GET", "/v1/models").json()["models"]

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/healthz").json()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]
