"""The `multiview_group` kind (placeholder)."""
from __future__ import annotations
import pyarrow as pa
MULTIVIEW_SCHEMA = pa.schema([("sample_id", pa.int64())])
def plan_groups(labels, skeleton, options): return []
def group_rows(items, context): return iter(())
def card_fields(items, context): return {}
