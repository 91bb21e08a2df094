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


def test_a_flat_start_is_no_plateau_before_min_epochs():
    flat_start = [0.255, 0.256, 0.255]
    assert at_plateau(flat_start, 3, 0.005) is True
    assert at_plateau(flat_start, 3, 0.005, min_epochs=5) is False
    assert at_plateau([*flat_start, 0.4, 0.401, 0.402], 3, 0.005, min_epochs=5) is True


def test_every_named_loss_term_is_averaged_per_epoch():
    from poseops.train.loop import mean_terms

    steps = [
        {"loss": 3.0, "loss_stage1": 1.0, "loss_stage2": 2.0},
        {"loss": 5.0, "loss_stage1": 2.0, "loss_stage2": 3.0},
    ]
    assert mean_terms(steps) == {"train_loss_stage1": 1.5, "train_loss_stage2": 2.5}
    assert mean_terms([]) == {}
