"""A tiny importer plug-in (the README's example): JSON lines, one labelled person per line,
{"image": "a.png", "width": 160, "height": 120, "points": [[x, y, v], ...]} of a 3-point marker set.
Installed for tests by tests/unit/test_importer_plugins.py through a dist-info with an entry point."""

import json
from pathlib import Path

NAMES = ["left_marker", "right_marker", "centre_marker"]


def read_jsonl(file, images_dir, out_folder, **options):
    file = Path(file)
    folder = Path(images_dir) if images_dir else file.parent
    images, annotations = {}, []
    for line in file.read_text().splitlines():
        row = json.loads(line)
        if row["image"] not in images:
            images[row["image"]] = {
                "id": len(images) + 1,
                "file_name": str((folder / row["image"]).resolve()),
                "width": row["width"],
                "height": row["height"],
                "source": "jsonl",
            }
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": images[row["image"]]["id"],
                "category_id": 1,
                "keypoints": [v for point in row["points"] for v in point],
            }
        )
    return {
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [{"id": 1, "name": "marker", "keypoints": NAMES, "sigmas": [0.05] * 3}],
        "info": {"sources": [str(file)]},
    }
