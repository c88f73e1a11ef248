"""The pipeline against the phantom's truth: lung within 2 %, lesions by type within 5 %."""

from __future__ import annotations

from functools import cache

import pytest

from celltrial.imaging.lesions import segment_lesions
from celltrial.imaging.lungs import segment_lungs
from celltrial.imaging.quantify import summarize_ct
from tests.imaging.conftest import small_phantom

CASES = [(1.0, 15.0), (3.0, 40.0), (5.0, 15.0), (5.0, 40.0)]


@cache
def _measure(slice_mm: float, noise_hu: float):
    p = small_phantom(slice_mm, noise_hu)
    lungs = segment_lungs(p.volume)
    lesions = segment_lesions(p.volume, lungs.labels)
    q = summarize_ct(p.volume.hu, lungs.labels, lesions, spacing=p.volume.spacing)
    return p, lungs, q


@pytest.mark.parametrize(("slice_mm", "noise_hu"), CASES)
def test_lung_volume_within_2_percent(slice_mm, noise_hu):
    p, lungs, q = _measure(slice_mm, noise_hu)
    assert q.lung_ml == pytest.approx(p.truth["lung"], rel=0.02)
    for side, value in (("right", 1), ("left", 2)):
        found = (lungs.labels == value).sum() * p.volume.voxel_ml
        assert found == pytest.approx(p.truth[f"lung_{side}"], rel=0.02)


@pytest.mark.parametrize(("slice_mm", "noise_hu"), CASES)
def test_ground_glass_within_5_percent(slice_mm, noise_hu):
    p, _, q = _measure(slice_mm, noise_hu)
    assert q.ground_glass_ml == pytest.approx(p.truth["ground_glass"], rel=0.05)


@pytest.mark.parametrize(("slice_mm", "noise_hu"), CASES)
def test_consolidation_within_5_percent(slice_mm, noise_hu):
    p, _, q = _measure(slice_mm, noise_hu)
    assert q.consolidation_ml == pytest.approx(p.truth["consolidation"], rel=0.05)


def test_right_is_right_and_airways_left_out(phantom):
    lungs = segment_lungs(phantom.volume)
    right = (lungs.labels == 1).nonzero()[2].mean()
    left = (lungs.labels == 2).nonzero()[2].mean()
    assert right < left  # internal x grows towards the patient's left
    assert lungs.airway_ml > 3.0  # the trachea was found and removed
    trachea_top = phantom.volume.hu.shape[0] - 1
    assert not lungs.labels[trachea_top].any() or lungs.labels[trachea_top].sum() < 50


def test_subpleural_consolidation_mostly_inside_the_lungs(phantom):
    lungs = segment_lungs(phantom.volume)
    truth = phantom.lesions == 2
    inside = (truth & (lungs.labels > 0)).sum() / truth.sum()
    assert inside > 0.95  # a plain threshold keeps none of it
