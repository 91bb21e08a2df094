"""Pictures people look at: keypoint overlays, sample grids, curves."""
