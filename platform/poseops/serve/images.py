"""Request decoding, and the one place where request limits are enforced.

    decode_request(content_type, body, limits) -> (image_bgr [H, W, 3] uint8, box_xywh | None)

Accepted bodies:
- `multipart/form-data`: file (or field) `image`, optional field `box` ("[x, y, w, h]" or "x,y,w,h");
- `application/json`: {"image_b64": "...", "box": [x, y, w, h]} (box optional);
- `image/*` or `application/octet-stream`: the image file itself, the box from the `box` query parameter.

Every refusal is a `RequestError`: 413 for a body over `max_body_bytes` or an image over `max_pixels`
(read from the file's header by Pillow, before any pixel is decoded), 415 for an unknown content type,
422 for an empty body, a malformed form, an undecodable image or an invalid box. OpenCV sees only
bytes whose header already passed the size check.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import warnings
from typing import Any

import numpy as np
from pydantic import ValidationError

from poseops.config import ServeParams
from poseops.errors import RequestError
from poseops.serve import Box
from poseops.serve.schemas import PredictJsonRequest

IMAGE_FORMATS = (
    "PNG",
    "JPEG",
    "WEBP",
    "BMP",
    "TIFF",
)  # Pillow reads their headers, OpenCV decodes them
FORM_FIELDS = ("image", "box")


# ---------------------------------------------------------------- sizes
def check_declared_length(content_length: str | None, limits: ServeParams) -> None:
    """Refuse (413) a request whose Content-Length header is over the limit, before reading it."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise RequestError(
            400, f"Content-Length header: not an integer ({content_length!r})"
        ) from None
    check_body_size(declared, limits)


def check_body_size(num_bytes: int, limits: ServeParams) -> None:
    """Refuse (413) a body of more than `limits.max_body_bytes` bytes (so far, or declared)."""
    if num_bytes > limits.max_body_bytes:
        raise RequestError(
            413,
            f"request body: {num_bytes} bytes is over the limit of {limits.max_body_bytes} bytes",
        )


def check_pixels(width: int, height: int, limits: ServeParams) -> None:
    if width * height > limits.max_pixels:
        raise RequestError(
            413,
            f"image: {width}x{height} = {width * height} pixels is over the limit of {limits.max_pixels} pixels",
        )


def read_image_size(data: bytes, limits: ServeParams) -> tuple[int, int]:
    """(width, height) from the image file's header only; 422 if it is not a supported image.

    Pillow's `Image.open` is lazy: it parses the header (PNG IHDR, JPEG SOF, ...) and decodes nothing.
    Pillow itself refuses headers over twice its own `MAX_IMAGE_PIXELS` (~179 MP): that is a 413 too.
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as header:
                return header.size
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{found.group(1)} pixels" if found else "the header's size"
            raise RequestError(
                413, f"image: {size} is over the limit of {limits.max_pixels} pixels"
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise RequestError(
                422, f"image: not a readable image file (supported: {', '.join(IMAGE_FORMATS)})"
            ) from None


def decode_image(data: bytes, limits: ServeParams) -> np.ndarray:
    """Encoded image file -> [H, W, 3] uint8 BGR; 413 over `max_pixels`, 422 if undecodable."""
    if not data:
        raise RequestError(422, "image: empty")
    width, height = read_image_size(data, limits)
    check_pixels(width, height, limits)
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.size == 0:
        raise RequestError(
            422,
            "image: the file's header is readable but its pixels are not (corrupt or truncated)",
        )
    check_pixels(image.shape[1], image.shape[0], limits)  # the decoder may disagree with the header
    return image


# ---------------------------------------------------------------- box
def parse_box(raw: Any, image_shape: tuple[int, ...]) -> Box:
    """[x, y, w, h] (list, or a string "x,y,w,h" / "[x, y, w, h]") -> floats; 422 naming `box` if invalid.

    Valid: four finite numbers, w > 0 and h > 0, and the box overlaps the [H, W] image.
    """
    values = raw
    if isinstance(raw, (bytes, bytearray)):
        values = raw.decode("utf-8", errors="replace")
    if isinstance(values, str):
        text = values.strip()
        try:
            values = (
                json.loads(text)
                if text.startswith("[")
                else [float(part) for part in text.split(",")]
            )
        except ValueError:
            raise RequestError(
                422, f"box: expected [x, y, w, h] or 'x,y,w,h', got {text[:80]!r}"
            ) from None
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise RequestError(422, f"box: expected 4 numbers [x, y, w, h], got {str(raw)[:80]!r}")
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise RequestError(
            422, f"box: expected 4 finite numbers [x, y, w, h], got {str(raw)[:80]!r}"
        )
    x, y, w, h = (float(v) for v in values)
    if w <= 0 or h <= 0:
        raise RequestError(422, f"box: width and height must be positive, got w={w:g}, h={h:g}")
    height, width = image_shape[:2]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise RequestError(
            422, f"box: [{x:g}, {y:g}, {w:g}, {h:g}] does not overlap the {width}x{height} image"
        )
    return (x, y, w, h)


# ---------------------------------------------------------------- body forms
def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_form(
    content_type: str, body: bytes, limits: ServeParams, fields: tuple[str, ...]
) -> dict[str, bytes]:
    """multipart/form-data -> {field: bytes}, each field one of `fields` and given once; 422 on a
    malformed form (no boundary, an unknown or repeated field, a broken body)."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import FormParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(422, "Content-Type: multipart/form-data without a boundary")
    parts: dict[str, bytes] = {}

    def keep(name: bytes | None, value: bytes) -> None:
        key = (name or b"").decode("utf-8", errors="replace")
        if key not in fields:
            raise RequestError(422, f"form field {key!r}: unknown (expected {', '.join(fields)})")
        if key in parts:
            raise RequestError(422, f"form field {key!r}: given more than once")
        parts[key] = value

    config = {
        "MAX_BODY_SIZE": limits.max_body_bytes,
        "MAX_MEMORY_FILE_SIZE": limits.max_body_bytes + 1,
    }
    parser = FormParser(
        "multipart/form-data",
        on_field=lambda field: keep(field.field_name, field.value or b""),
        on_file=lambda file: keep(file.field_name, file.file_object.getvalue()),
        boundary=boundary,
        config=config,
    )
    try:
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise RequestError(422, f"multipart form: malformed ({exc})") from None
    return parts


def read_multipart(content_type: str, body: bytes, limits: ServeParams) -> tuple[bytes, Any]:
    """multipart/form-data -> (image file bytes, raw box or None); 422 on a malformed form."""
    parts = read_form(content_type, body, limits, FORM_FIELDS)
    if "image" not in parts:
        raise RequestError(
            422, "form field 'image': missing (send the image file as field 'image')"
        )
    return parts["image"], parts.get("box")


def read_json(body: bytes) -> tuple[bytes, Any]:
    """{"image_b64", "box"} -> (image file bytes, raw box or None); 422 naming the bad field."""
    try:
        request = PredictJsonRequest.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RequestError(422, f"JSON body: {problems}") from None
    text = request.image_b64
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "image_b64: not valid base64") from None
    return data, request.box


def decode_request(
    content_type: str | None, body: bytes, limits: ServeParams, query_box: str | None = None
) -> tuple[np.ndarray, Box | None]:
    """Request body -> (image_bgr [H, W, 3] uint8, box_xywh or None), enforcing `limits`.

    `query_box` is the `box` query parameter (the only way to give a box with a raw image body).
    """
    check_body_size(len(body), limits)
    if not body:
        raise RequestError(
            422, "request body: empty (send an image: multipart field 'image', or JSON 'image_b64')"
        )
    media_type = _media_type(content_type)
    if media_type == "multipart/form-data":
        data, raw_box = read_multipart(content_type or "", body, limits)
    elif media_type == "application/json" or media_type.endswith("+json"):
        data, raw_box = read_json(body)
    elif media_type.startswith("image/") or media_type in ("application/octet-stream", ""):
        data, raw_box = body, None
    else:
        raise RequestError(
            415,
            f"Content-Type {media_type!r}: expected multipart/form-data, application/json or image/*",
        )
    if raw_box is not None and query_box is not None:
        raise RequestError(422, "box: given both in the body and as a query parameter")
    raw_box = raw_box if raw_box is not None else query_box
    image = decode_image(data, limits)
    box = None if raw_box is None or raw_box in ("", b"") else parse_box(raw_box, image.shape)
    return image, box
