"""The validation-plateau stop: the last `window` evaluations within `min_delta` of each other."""

import pytest

from poseops.train.loop import at_plateau


@pytest.mark.parametrize(
    "values, window, expected",
    [
        ([0.1, 0.3, 0.5], 3, False),  # still climbing
        ([0.1, 0.501, 0.503, 0.504], 3, True),  # last three within 0.005
        ([0.501, 0.503], 3, False),  # too few evaluations
        ([0.5, 0.5, 0.5], None, False),  # plateau stop off
        ([0.50, 0.506, 0.503], 3, False),  # spread 0.006
    ],
)
def test_at_plateau(values, window, expected):
    assert at_plateau(values, window, 0.005) is expected
