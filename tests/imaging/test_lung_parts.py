"""A part of a slice's lung with no air in or beside it is soft tissue, not lung (issue 24: the
liver under a basal recess, reached by the 3-D pleural fill, was lung and "lesion")."""

from __future__ import annotations

import numpy as np

from celltrial.imaging.lungs import LEFT, RIGHT, _drop_airless


def _slice() -> tuple[np.ndarray, np.ndarray]:
    """One coarse slice: a right lung of air, a detached +50 HU patch labelled right lung, a
    detached ring of cyst walls around air (the air itself outside the mask), a left lung."""
    smooth = np.full((1, 60, 60), 40.0, dtype=np.float32)  # soft tissue
    filled = np.zeros((1, 60, 60), dtype=np.uint8)
    smooth[0, 5:25, 5:25] = -850.0
    filled[0, 5:25, 5:25] = RIGHT
    filled[0, 40:50, 5:15] = RIGHT  # the liver patch: +40 HU, no air near it
    filled[0, 30:40, 30:40] = RIGHT  # cyst walls ...
    smooth[0, 33:37, 33:37] = -990.0  # ... around air the mask leaves out
    filled[0, 33:37, 33:37] = 0
    smooth[0, 5:25, 40:55] = -800.0
    filled[0, 5:25, 40:55] = LEFT
    return filled, smooth


def test_airless_detached_part_is_dropped_and_the_rest_kept() -> None:
    filled, smooth = _slice()
    before = filled.copy()
    _drop_airless(filled, smooth)
    assert not filled[0, 40:50, 5:15].any()
    np.testing.assert_array_equal(filled[0, :30], before[0, :30])
    np.testing.assert_array_equal(filled[0, 30:40, 30:40], before[0, 30:40, 30:40])


def test_dense_part_joined_to_aerated_lung_is_kept() -> None:
    filled, smooth = _slice()
    filled[0, 25:40, 5:15] = RIGHT  # consolidation joining the patch to the aerated lung
    before = filled.copy()
    _drop_airless(filled, smooth)
    np.testing.assert_array_equal(filled, before)
