"""Derived datasets: Parquet shards (no training targets) with a card written last, derived on Ray, and loaders.

    derive.py      derive_dataset(kind, ...): plan -> split -> chunks -> Ray tasks (or in-process) -> card
    shards.py      ShardWriter (bounded Parquet files), splits, frame reading, the crop kinds
    bottomup.py    bottomup_image rows' loader: BottomUpDataset, load_bottomup_split (rows: bottomup_rows.py)
    lifting.py     lifting_sequence rows and load_lifting_split
    multiview.py   multiview_group rows and load_multiview_split
    loader.py      ShardStream (seeded row-group order, shuffle buffer, per-rank shares), CropDataset
    transforms.py  crop geometry shared with evaluation and serving
"""
