"""Group-relative advantages (numpy, computed in the driver): values worked out by hand."""

import math

import numpy as np
import pytest

from policy.advantages import group_advantages


def test_group_advantages_by_hand():
    # group 1: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1; group 2: all equal -> zeros
    adv = group_advantages([1.0, 2.0, 3.0, 5.0, 5.0, 5.0], group_size=3)
    s = 1 / (1 + 1e-4)
    assert adv.dtype == np.float32
    np.testing.assert_allclose(adv, [-s, 0.0, s, 0.0, 0.0, 0.0], rtol=1e-6)


def test_group_advantages_groups_are_consecutive_and_unbiased():
    # G=2: [0, 4] -> mean 2, unbiased std sqrt(8) -> -+2/sqrt(8); [3, 1] -> mean 2, std sqrt(2) -> +-1/sqrt(2)
    adv = group_advantages(np.array([0.0, 4.0, 3.0, 1.0]), group_size=2, eps=0.0)
    v = 2 / math.sqrt(8)
    np.testing.assert_allclose(adv, [-v, v, 1 / math.sqrt(2), -1 / math.sqrt(2)], rtol=1e-6)


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(np.zeros(4), group_size=1)
    with pytest.raises(ValueError, match="shape"):
        group_advantages(np.zeros(5), group_size=2)
    with pytest.raises(ValueError, match="shape"):
        group_advantages(np.zeros((2, 2)), group_size=2)
