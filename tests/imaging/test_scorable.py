"""When a segmented scan can be scored (issue 24), on drawn lung masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from celltrial.imaging.lungs import _not_below
from celltrial.imaging.scorable import NotScorable, assess_coverage


def _lungs(nz: int, areas: list[int]) -> np.ndarray:
    """A (nz, 40, 40) mask with a square lung of ``areas[k]`` pixels in slice k."""
    out = np.zeros((nz, 40, 40), dtype=np.uint8)
    for k, area in enumerate(areas):
        side = math.isqrt(area)  # the areas are squares
        if side:
            out[k, 20 - side // 2 : 20 - side // 2 + side, 10 : 10 + side] = 1
    return out


# a whole lung: small at the base (k = 0 is inferior), widest low down, tapering to the apex
WHOLE = [0, 100, 400, 576, 529, 484, 400, 324, 225, 144, 64, 16, 0]


def test_a_whole_lung_is_scored_in_every_zone():
    coverage = assess_coverage(_lungs(13, WHOLE), (10.0, 1.0, 1.0), source="s")
    assert coverage.uncovered == frozenset() and coverage.notes == ()


def test_too_few_slices_or_millimetres():
    with pytest.raises(NotScorable, match=r"too little lung .*4 slice"):
        assess_coverage(_lungs(6, [0, 400, 400, 400, 400, 0]), (20.0, 1.0, 1.0), source="s")
    with pytest.raises(NotScorable, match=r"too little lung .*\(30 mm in 10 slice"):
        assess_coverage(_lungs(12, [0] + [400] * 10 + [0]), (3.0, 1.0, 1.0), source="s")


def test_apex_above_the_scan_leaves_the_upper_zones_unscored():
    # the scan stops at k = 8 of WHOLE: 225 of the widest 576 pixels there (39 % > 25 %)
    coverage = assess_coverage(_lungs(9, WHOLE[:9]), (10.0, 1.0, 1.0), source="s")
    assert coverage.uncovered == {"upper"}
    base_cut = assess_coverage(_lungs(10, WHOLE[3:]), (10.0, 1.0, 1.0), source="s")
    assert base_cut.uncovered == {"lower"}


def test_lung_bases_only_is_not_a_chest():
    # the scan stops at k = 5, the lungs still 84 % of their widest there (484 of 576 pixels)
    with pytest.raises(NotScorable, match="not a chest CT"):
        assess_coverage(_lungs(6, WHOLE[:6]), (10.0, 1.0, 1.0), source="s")


def test_lungs_cut_by_the_field_of_view():
    with pytest.raises(NotScorable, match="cut by the field of view"):
        assess_coverage(_lungs(13, WHOLE), (10.0, 1.0, 1.0), source="s", cut_share=0.5)
    ok = assess_coverage(_lungs(13, WHOLE), (10.0, 1.0, 1.0), source="s", cut_share=0.05)
    assert any("edge in 5 %" in note for note in ok.notes)


def test_single_slice_is_left_to_the_caller():
    assert assess_coverage(_lungs(1, [400]), (1.0, 1.0, 1.0), source="s").uncovered == set()


def test_gas_below_the_largest_component_is_not_lung():
    labels = np.zeros((20, 4, 4), dtype=np.int32)
    labels[5:20, 0, 0] = 1  # the lung, slices 5–19: its lower quarter ends at 8.5
    labels[0:6, 1, 1] = 2  # gas centred at 2.5: below
    labels[8:12, 2, 2] = 3  # centred at 9.5: beside the lung, kept
    assert _not_below(labels, 3, 1)[1:].tolist() == [True, False, True]
