"""A toy poseops family installed as a plug-in: model `toy2layer` (model.py), family `toyhands` (family.py)."""
