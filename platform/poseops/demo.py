"""The demo's last act: serve the champions, send each family an image, show what came back."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import httpx
import numpy as np
from rich.console import Console

from poseops.paths import state_dir

console = Console()


def held_out_example(dataset_url: str) -> tuple[np.ndarray, list[float] | None]:
    """The first test-split sample of a derived dataset (unseen in training and checkpoint selection): (image BGR, box [x, y, w, h]); the box is None
    for whole-image (bottom-up) datasets, whose rows have none."""
    import pyarrow.parquet as pq

    from poseops.storage import filesystem, join

    fs, path = filesystem(join(dataset_url, "test"))
    first = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".parquet"))[0]
    with fs.open(first, "rb") as f:
        shard = pq.ParquetFile(f)
        columns = [c for c in ("image", "box_in_crop") if c in shard.schema_arrow.names]
        row = shard.read_row_group(0, columns=columns).slice(0, 1).to_pylist()[0]
    image = cv2.imdecode(np.frombuffer(row["image"], np.uint8), cv2.IMREAD_COLOR)
    box = row.get("box_in_crop")
    return image, None if box is None else [float(v) for v in box]


def held_out_track(dataset_url: str) -> tuple[dict, np.ndarray]:
    """The first test-split window of a derived lifting dataset: (the endpoint's JSON request: 2D track
    in px with the image size, skeleton h36m17; the centre frame's root-relative 3D in mm [17, 3])."""
    import json

    import pyarrow.parquet as pq

    from poseops.storage import filesystem, join

    fs, path = filesystem(join(dataset_url, "test"))
    first = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".parquet"))[0]
    with fs.open(first, "rb") as f:
        row = pq.ParquetFile(f).read_row_group(0).slice(0, 1).to_pylist()[0]
    frames = len(row["frame_indices"])
    track = np.asarray(row["keypoints_2d"], np.float64).reshape(frames, -1, 2)
    truth = np.asarray(row["keypoints_3d_cam"], np.float64).reshape(frames, -1, 3)[frames // 2]
    camera = json.loads(row["camera"])
    request = {
        "keypoints": [[[x, y, 1.0] for x, y in frame] for frame in track.tolist()],
        "image_size": [camera["width"], camera["height"]],
        "skeleton": "h36m17",
    }
    return request, truth


SHOWN_SCORE = (
    0.3  # a bottom-up answer's people drawn and counted by the demo: those scored at least this
)


def shown_score(metrics_dir: Path) -> float:
    """The score a bottom-up answer's people must reach to be drawn and counted: the evaluation's count
    threshold (picked on validation images, `count_score` in metrics.json) when there is one, else SHOWN_SCORE."""
    path = metrics_dir / "metrics.json"
    if not path.is_file():
        return SHOWN_SCORE
    value = json.loads(path.read_text()).get("count_score")
    return SHOWN_SCORE if value is None else float(value)


def answer_people(body: dict, min_score: float = SHOWN_SCORE) -> list[np.ndarray]:
    """[K,3] (x, y, score) of each person scored >= min_score in an endpoint answer (at least the best
    one); a top-down answer is one person."""
    if "people" not in body:
        return [np.asarray(body["keypoints"], np.float64).reshape(-1, 3)]
    people = sorted(body["people"], key=lambda person: -person["score"])
    kept = [person for person in people if person["score"] >= min_score] or people[:1]
    return [np.asarray(person["keypoints"], np.float64).reshape(-1, 3) for person in kept]


def draw_people(image: np.ndarray, people: list[np.ndarray], skeleton) -> np.ndarray:
    """A copy of the BGR image [H,W,3] with each person's keypoints [K,3] (x, y in image px) and limbs drawn;
    small crops are enlarged (nearest neighbour) to about 480 px first, so that a person can see them."""
    from poseops.viz.overlay import draw_keypoints

    zoom = max(1, 480 // max(image.shape[:2]))
    overlay = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for person in people:
        draw_keypoints(overlay, (person[:, :2] + 0.5) * zoom - 0.5, skeleton)
    return overlay


def query_each_family(params_path: str | Path = "params.yaml") -> dict[str, dict]:
    from poseops.deploy import build_champion_app
    from poseops.families import get_family, load_params
    from poseops.pipeline import layout, restore_champions
    from poseops.serve.runner import serving
    from poseops.skeletons import get_skeleton
    from poseops.viz.pose3d import plot_pose_3d

    params = load_params(params_path)
    for name in restore_champions(params, layout()):
        console.print(
            f"{name}: champion restored in the registry from metrics/{name}/promotion.json"
        )
    app, names = build_champion_app(params)
    answers = {}
    out_dir = state_dir() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    with serving(app, params.serve.host, params.serve.port) as base_url:
        console.print(f"endpoint up at {base_url} (OpenAPI docs: {base_url}/docs)")
        for name in names:
            if get_family(name).task == "lifting_sequence":
                request, truth = held_out_track(str(layout().derived(name)))
                response = httpx.post(f"{base_url}/v1/{name}/predict", json=request, timeout=60)
                response.raise_for_status()
                body = answers[name] = response.json()
                lifted = np.asarray(body["keypoints_3d"], np.float64)
                plot_path = out_dir / f"{name}_pose3d.png"
                plot_pose_3d(lifted, truth, get_skeleton(get_family(name).skeleton), plot_path)
                error = float(np.linalg.norm(lifted - truth, axis=1).mean())
                console.print(
                    f"POST /v1/{name}/predict -> model {body['model']['name']} v{body['model']['version']}: "
                    f"the centre frame of a {len(request['keypoints'])}-frame test track, MPJPE {error:.1f} mm"
                )
                console.print(
                    "3D [x, y, z] mm: "
                    + ", ".join(f"[{x:.0f}, {y:.0f}, {z:.0f}]" for x, y, z in lifted)
                )
                console.print(f"3D plot: {plot_path}")
                continue
            image, box = held_out_example(str(layout().derived(name)))
            ok, png = cv2.imencode(".png", image)
            form = {} if box is None else {"box": ",".join(f"{v:.2f}" for v in box)}
            response = httpx.post(
                f"{base_url}/v1/{name}/predict",
                files={"image": ("example.png", png.tobytes(), "image/png")},
                data=form,
                timeout=60,
            )
            response.raise_for_status()
            body = response.json()
            answers[name] = body
            min_score = shown_score(layout().metrics(name))
            people = answer_people(body, min_score)
            overlay = draw_people(image, people, get_skeleton(get_family(name).skeleton))
            overlay_path = out_dir / f"{name}_overlay.png"
            cv2.imwrite(str(overlay_path), overlay)
            console.print(
                f"POST /v1/{name}/predict -> model {body['model']['name']} v{body['model']['version']}"
            )
            if "people" in body:
                console.print(
                    f"people scored >= {min_score:g}: {sum(p['score'] >= min_score for p in body['people'])} "
                    f"(of {len(body['people'])} returned)"
                )
            for person in people[:3]:
                console.print(
                    "keypoints [x, y, score]: "
                    + ", ".join(f"[{x:.1f}, {y:.1f}, {s:.2f}]" for x, y, s in person)
                )
            console.print(f"overlay image: {overlay_path}")
    console.print("endpoint stopped")
    for clip in write_clips(layout().raw / "sequences", out_dir / "clips"):
        console.print(f"clip of {clip['people']} people, {clip['frames']} frames: {clip['path']}")
    return answers


def write_clips(sequences_dir: Path, out_dir: Path, frames: int = 60) -> list[dict]:
    """MP4 clips of 1, 2 and 3 performers of the long sequences (poseops.capture.sequence_render), for
    a person to watch; none when the sequences part is not captured."""
    from poseops.capture.sequence_render import write_clip
    from poseops.storage import read_json

    manifest = sequences_dir / "manifest.json"
    if not manifest.exists():
        return []
    ids = [e["id"] for e in read_json(manifest)["sequences"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_clip(sequences_dir, out_dir / f"people_{n}.mp4", ids[:n], frames=frames)
        for n in (1, 2, 3)
        if len(ids) >= n
    ]
