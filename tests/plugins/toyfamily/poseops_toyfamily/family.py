"""The family row of the plug-in: a hand family of the in-tree topdown_crop task."""

from poseops.families import Family

FAMILY = Family(
    name="toyhands",
    model="toy2layer",
    task="topdown_crop",
    skeleton="hand21",
    primary_metric="pck",
    description="plug-in test family: two convolutions and integral regression",
)
