"""The demo's last act: serve the champions, send each family an image, show what came back."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
import numpy as np
from rich.console import Console

from poseops.paths import state_dir

console = Console()


def validation_example(dataset_url: str) -> tuple[np.ndarray, list[float]]:
    """The first validation sample of a derived dataset: (image BGR, box [x, y, w, h])."""
    import pyarrow.parquet as pq

    from poseops.storage import filesystem, join

    fs, path = filesystem(join(dataset_url, "val"))
    first = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".parquet"))[0]
    with fs.open(first, "rb") as f:
        row = pq.ParquetFile(f).read_row_group(0, columns=["image", "box_in_crop"]).slice(0, 1).to_pylist()[0]
    image = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)
    return image, [float(v) for v in row["box_in_crop"]]


def query_each_family(params_path: str | Path = "params.yaml") -> dict[str, dict]:
    from poseops.deploy import build_champion_app
    from poseops.families import get_family, load_params
    from poseops.pipeline import layout
    from poseops.serve.runner import serving
    from poseops.skeletons import get_skeleton
    from poseops.viz.overlay import draw_keypoints

    params = load_params(params_path)
    app, names = build_champion_app(params)
    answers = {}
    out_dir = state_dir() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    with serving(app, params.serve.host, params.serve.port) as base_url:
        console.print(f"endpoint up at {base_url} (OpenAPI docs: {base_url}/docs)")
        for name in names:
            image, box = validation_example(str(layout().derived(name)))
            ok, png = cv2.imencode(".png", image)
            response = httpx.post(
                f"{base_url}/v1/{name}/predict", files={"image": ("example.png", png.tobytes(), "image/png")},
                data={"box": ",".join(f"{v:.2f}" for v in box)}, timeout=60,
            )
            response.raise_for_status()
            body = response.json()
            answers[name] = body
            points = np.array([kp[:2] for kp in body["keypoints"]])
            zoom = max(1, 480 // max(image.shape[:2]))  # small crops are drawn enlarged
            big = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
            overlay = draw_keypoints(big, (points + 0.5) * zoom - 0.5, get_skeleton(get_family(name).skeleton))
            overlay_path = out_dir / f"{name}_overlay.png"
            cv2.imwrite(str(overlay_path), overlay)
            console.print(f"POST /v1/{name}/predict -> model {body['model']['name']} v{body['model']['version']}")
            console.print("keypoints [x, y, score]: " + ", ".join(f"[{x:.1f}, {y:.1f}, {s:.2f}]" for x, y, s in body["keypoints"]))
            console.print(f"overlay image: {overlay_path}")
    console.print("endpoint stopped")
    return answers
