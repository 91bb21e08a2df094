"""Request decoding and limits (poseops.serve.images): every refusal is a RequestError with a status."""

import base64
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from poseops.config import ServeParams
from poseops.errors import RequestError
from poseops.serve.images import decode_request, parse_box, read_image_size

LIMITS = ServeParams()


def encoded(ext: str, height: int = 48, width: int = 64) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR (with a correct CRC) claims width x height."""
    png = encoded(".png", 8, 8)
    at = png.index(b"IHDR")
    ihdr = struct.pack(">II", width, height) + png[at + 12 : at + 17]
    return (
        png[:at] + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[at + 21 :]
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 marker claims width x height."""
    jpg = encoded(".jpg", 8, 8)
    at = jpg.index(b"\xff\xc0")  # SOF0: marker, length(2), precision(1), height(2), width(2)
    return jpg[: at + 5] + struct.pack(">HH", height, width) + jpg[at + 9 :]


def multipart(fields: dict[str, bytes], boundary: str = "poseopsboundary") -> tuple[str, bytes]:
    lines = []
    for name, value in fields.items():
        disposition = f'form-data; name="{name}"' + (
            '; filename="x.png"' if name == "image" else ""
        )
        lines += [
            f"--{boundary}".encode(),
            f"Content-Disposition: {disposition}".encode(),
            b"",
            value,
        ]
    body = b"\r\n".join(lines + [f"--{boundary}--".encode(), b""])
    return f"multipart/form-data; boundary={boundary}", body


def status_of(content_type: str | None, body: bytes, limits: ServeParams = LIMITS, **kw) -> int:
    with pytest.raises(RequestError) as info:
        decode_request(content_type, body, limits, **kw)
    return info.value.status


# ---------------------------------------------------------------- limits
@pytest.mark.parametrize("claim", [png_claiming, jpeg_claiming])
@pytest.mark.parametrize("side", [20000, 5000])  # 400 MP (Pillow's own bomb check) and 25 MP (ours)
def test_huge_header_is_413_before_decoding(claim, side, monkeypatch):
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a))  # must never be reached
    assert status_of("image/png", claim(side, side)) == 413
    assert decoded == []


def test_crafted_headers_are_read_exactly():
    assert read_image_size(png_claiming(321, 123), LIMITS) == (321, 123)
    assert read_image_size(jpeg_claiming(321, 123), LIMITS) == (321, 123)


def test_pixel_limit_is_configurable():
    small = ServeParams(max_pixels=64 * 48 - 1)
    assert status_of("image/png", encoded(".png"), small) == 413
    image, _ = decode_request("image/png", encoded(".png"), ServeParams(max_pixels=64 * 48))
    assert image.shape == (48, 64, 3)


def test_body_over_limit_is_413():
    body = encoded(".png") + b"\0" * 10_000_001
    assert status_of("image/png", body) == 413
    assert status_of("image/png", encoded(".png"), ServeParams(max_body_bytes=100)) == 413


@pytest.mark.parametrize(
    "content_type", ["image/png", "application/json", None, "multipart/form-data; boundary=b"]
)
def test_empty_body_is_422(content_type):
    assert status_of(content_type, b"") == 422


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_422(seed):
    junk = np.random.default_rng(seed).bytes(2000)
    assert status_of("image/jpeg", junk) == 422
    assert status_of("application/json", junk) == 422
    assert status_of(*multipart({"image": junk})) == 422


def test_truncated_image_is_422():
    png = encoded(".png", 200, 200)
    assert status_of("image/png", png[: len(png) // 2]) == 422
    assert status_of("image/png", png[:30]) == 422


def test_unknown_content_type_is_415():
    assert status_of("text/plain", b"hello") == 415


# ---------------------------------------------------------------- forms
@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_raw_image_body(ext):
    image, box = decode_request(
        "application/octet-stream", encoded(ext), LIMITS, query_box="1,2,3,4"
    )
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert box == (1.0, 2.0, 3.0, 4.0)


def test_decoded_pixels_match_the_source():
    source = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    image, _ = decode_request("image/png", cv2.imencode(".png", source)[1].tobytes(), LIMITS)
    np.testing.assert_array_equal(image, source)


@pytest.mark.parametrize("box_text", ["[4, 5, 10, 20]", "4,5,10,20", " 4 , 5, 10 ,20 "])
def test_multipart_with_box(box_text):
    image, box = decode_request(
        *multipart({"image": encoded(".png"), "box": box_text.encode()}), LIMITS
    )
    assert image.shape == (48, 64, 3)
    assert box == (4.0, 5.0, 10.0, 20.0)


def test_multipart_without_box_and_errors():
    image, box = decode_request(*multipart({"image": encoded(".jpg")}), LIMITS)
    assert image.shape == (48, 64, 3) and box is None
    assert status_of(*multipart({"box": b"1,2,3,4"})) == 422  # no image
    assert status_of(*multipart({"image": encoded(".png"), "boxes": b"1"})) == 422  # unknown field
    assert status_of("multipart/form-data", b"--x\r\n") == 422  # no boundary
    assert status_of("multipart/form-data; boundary=zz", b"not a form at all") == 422


def test_json_forms():
    b64 = base64.b64encode(encoded(".png")).decode()
    body = json.dumps({"image_b64": b64, "box": [1, 2, 3, 4]}).encode()
    image, box = decode_request("application/json", body, LIMITS)
    assert image.shape == (48, 64, 3) and box == (1.0, 2.0, 3.0, 4.0)
    data_url = json.dumps({"image_b64": "data:image/png;base64," + b64}).encode()
    assert decode_request("application/json", data_url, LIMITS)[1] is None


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"box": [1, 2, 3, 4]}, "image_b64"),
        ({"image_b64": "!!!not base64!!!"}, "image_b64"),
        ({"image_b64": "aGVsbG8=", "extra": 1}, "extra"),
        ({"image_b64": "aGVsbG8="}, "image"),  # valid base64, not an image
    ],
)
def test_json_errors_name_the_field(payload, field):
    with pytest.raises(RequestError) as info:
        decode_request("application/json", json.dumps(payload).encode(), LIMITS)
    assert info.value.status == 422 and field in str(info.value)


def test_box_given_twice_is_422():
    body = json.dumps(
        {"image_b64": base64.b64encode(encoded(".png")).decode(), "box": [1, 2, 3, 4]}
    ).encode()
    assert status_of("application/json", body, query_box="1,2,3,4") == 422


# ---------------------------------------------------------------- boxes
@pytest.mark.parametrize(
    "raw",
    [
        [1, 2, 0, 4],  # zero width
        [1, 2, 3, -4],  # negative height
        [64, 0, 10, 10],  # starts right of the image (W = 64)
        [0, 48, 10, 10],  # starts below the image (H = 48)
        [-20, 0, 20, 10],  # ends at the left edge
        [1, 2, 3],  # wrong length
        [1, 2, 3, 4, 5],
        "1,2,x,4",
        [1, 2, float("nan"), 4],
        [True, 2, 3, 4],
        {"x": 1},
    ],
)
def test_invalid_boxes_are_422_naming_box(raw):
    with pytest.raises(RequestError) as info:
        parse_box(raw, (48, 64, 3))
    assert info.value.status == 422 and str(info.value).startswith("box")


def test_partly_outside_box_is_kept_as_given():
    assert parse_box([-5, -5, 20, 20], (48, 64, 3)) == (-5.0, -5.0, 20.0, 20.0)
    assert parse_box("60,40,100,100", (48, 64, 3)) == (60.0, 40.0, 100.0, 100.0)
