"""Targets <-> outputs: pure tensor functions between labels and network outputs.

`integral`: soft-argmax (integral regression), argmax decoding, Gaussian target heatmaps and the
input-pixel <-> normalised ([-0.5, 0.5]) coordinate maps.
"""
