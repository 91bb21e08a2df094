"""A family's derived dataset depends only on the labels' records it takes: one labels file feeds every
family, so an edit of a hand record must leave the body families' datasets byte-identical (DVC then
finds their train stages' inputs unchanged) while the hand family's dataset changes. And a cap
(`data.max_samples`) cuts every source by the same share, so a source appended after the synthetic
data is never cut to nothing; the card counts what each source kept and lost."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers_annotations import (
    coco_bodies_file,
    hand_sources_labels,
    labels_of,
    onehand10k_file,
)

from poseops.config import SplitParams
from poseops.datasets.derive import dataset_checksum, derive_dataset
from poseops.tasks import get_task


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def test_a_hand_record_edit_changes_the_hand_dataset_only(tmp_path):
    bodies = coco_bodies_file(tmp_path / "bodies")
    hands, _ = onehand10k_file(tmp_path / "hands", count=4)
    labels = labels_of(tmp_path / "labels" / "labels.json", {"bodies": bodies, "hands": hands})
    crop, bottomup = get_task("topdown_crop"), get_task("bottomup_image")
    split = SplitParams(val_fraction=0.25, test_fraction=0.25)
    derivations = {  # family-like name -> (rows, options, skeleton)
        "body_crops": (crop.rows, crop.Options(), "coco17"),
        "body_images": (bottomup.rows, bottomup.Options(), "coco17"),
        "hand_crops": (crop.rows, crop.Options(), "hand21"),
    }

    def derive_all(tag: str) -> dict[str, Path]:
        outs = {}
        for name, (rows, options, skeleton) in derivations.items():
            outs[name] = tmp_path / tag / name
            derive_dataset(
                rows, labels, str(outs[name]), options, split, skeleton=skeleton, executor="local"
            )
        return outs

    before = derive_all("before")
    data = json.loads(labels.read_text())
    hand = next(a for a in data["annotations"] if len(a["keypoints"]) == 63)
    hand["keypoints"][0] += 5.0  # the hands source's first wrist, moved 5 px
    labels.write_text(json.dumps(data))
    after = derive_all("after")

    for name in ("body_crops", "body_images"):
        assert folder_bytes(before[name]) == folder_bytes(after[name]), name
    cards = {
        tag: {n: json.loads((outs[n] / "card.json").read_text()) for n in derivations}
        for tag, outs in (("before", before), ("after", after))
    }
    hand_before, hand_after = cards["before"]["hand_crops"], cards["after"]["hand_crops"]
    assert hand_before["source"]["records_sha256"] != hand_after["source"]["records_sha256"]
    assert dataset_checksum(hand_before) != dataset_checksum(hand_after)
    for name in ("body_crops", "body_images"):
        assert dataset_checksum(cards["before"][name]) == dataset_checksum(cards["after"][name])
        assert cards["before"][name]["counts"] == {"train": 2, "val": 1, "test": 1}


def test_quotas_keep_each_sources_share_and_one_of_each():
    from poseops.datasets.derive import source_quotas

    assert source_quotas({"synthetic": 72, "freihand": 8}, 64) == {"synthetic": 58, "freihand": 6}
    assert source_quotas({"a": 100, "b": 1}, 10) == {"a": 9, "b": 1}  # 0.099 of a sample: one
    assert source_quotas({"a": 5, "b": 2}, 10) == {"a": 5, "b": 2}  # under the cap: all
    assert source_quotas({"a": 3, "b": 3, "c": 3}, 2) == {"a": 1, "b": 1, "c": 0}
    assert sum(source_quotas({"a": 7, "b": 11, "c": 13}, 9).values()) == 9


def test_max_samples_leaves_an_appended_source_its_share_and_the_card_counts_the_drops(tmp_path):
    from poseops.datasets.derive import cap_lines

    labels = hand_sources_labels(tmp_path, {"big": 12, "small": 3})  # small after big's hands
    crop = get_task("topdown_crop")
    card = derive_dataset(
        crop.rows,
        labels,
        str(tmp_path / "ds"),
        crop.Options(max_samples=4),
        SplitParams(val_fraction=0.2, test_fraction=0.2, seed=3),
        skeleton="hand21",
        executor="local",
    )
    cap, mix = card["source"]["cap"], card["source"]["mix"]
    train = cap["train"]
    assert train["big"]["kept"] + train["small"]["kept"] == card["counts"]["train"] == 4
    assert train["small"]["kept"] >= 1 and mix["train"]["small"] == train["small"]["kept"]
    assert train["big"]["dropped"] > 0
    for name in ("train", "val", "test"):
        assert sum(n["kept"] for n in cap[name].values()) == card["counts"][name]
    assert sum(n["kept"] + n["dropped"] for s in cap.values() for n in s.values()) == 15
    lines = cap_lines(card)
    assert len(lines) == 3
    line = next(line for line in lines if ": train:" in line)
    assert (
        f"big {train['big']['kept']} kept, {train['big']['dropped']} dropped; "
        f"small {train['small']['kept']} kept" in line
    )
