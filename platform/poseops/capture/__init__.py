"""Captures: synthetic generators and ingest of videos/folders into per-sequence files + a manifest."""
