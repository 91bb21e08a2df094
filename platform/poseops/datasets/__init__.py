"""Derived datasets: Parquet shards (no training targets) with a card written last, derived on Ray, and loaders.

    derive.py      derive_dataset(row_plan, ...): plan -> split -> chunks -> Ray tasks (or in-process) -> card
    shards.py      ShardWriter (bounded Parquet files), splits, frame reading, topdown_crop rows
    bottomup.py    bottomup_image rows' loader: BottomUpDataset, load_bottomup_split (rows: bottomup_rows.py)
    loader.py      ShardStream (seeded row-group order, shuffle buffer, per-rank shares), CropDataset
    transforms.py  crop geometry shared with evaluation and serving

Which rows a kind derives is its task's choice (`poseops.tasks.<kind>.rows`, a `derive.RowPlan`); the
lifting_sequence and multiview_group rows live in their task modules.
"""
