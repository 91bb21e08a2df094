"""The `lifting_sequence` kind (placeholder; filled in below)."""
from __future__ import annotations
import pyarrow as pa
LIFTING_SCHEMA = pa.schema([("sample_id", pa.int64())])
def plan_windows(labels, skeleton, options): return []
def window_rows(items, context): return iter(())
def card_fields(items, context): return {}
