"""Lungs on 8-bit display slices: a whole field of view with outside air around the body, and
real slices cropped to the thorax whose lungs reach the image's edges (medseg2d)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from celltrial.imaging.io import read_display_image
from celltrial.imaging.lungs import LEFT, RIGHT, segment_lungs
from tests.imaging.conftest import real_ct, small_phantom


def to_display(hu: np.ndarray, width: float = 1500.0, level: float = -600.0) -> np.ndarray:
    return np.clip(((hu - level) / width + 0.5) * 255.0, 0, 255).round().astype(np.uint8)


def test_lungs_of_a_whole_field_of_view_display_slice(tmp_path):
    phantom = small_phantom()
    k = phantom.volume.hu.shape[0] // 2
    path = tmp_path / "slice.png"
    Image.fromarray(to_display(phantom.volume.hu[k])).save(path)
    volume = read_display_image(path, pixel_mm=phantom.volume.spacing[1])
    lungs = segment_lungs(volume)
    found = lungs.labels[0]
    truth = phantom.lungs[k]
    assert {RIGHT, LEFT} <= set(np.unique(found))
    # outside air (dark, around the body) is not lung; the lungs are (orientation aside)
    assert np.count_nonzero(found) == pytest.approx(np.count_nonzero(truth), rel=0.1)
    assert "display image: airways not grown and removed" in lungs.notes


#: Real slices cropped to the thorax: lungs reaching edges, a trachea beside a lung, a small
#: crop of the upper thorax, diffuse disease.
CROPPED = (
    "train_002",
    "train_010",
    "train_015",
    "train_033",
    "train_043",
    "train_052",
    "train_057",
)


@pytest.mark.parametrize("name", CROPPED)
def test_lungs_of_real_display_slices_cropped_to_the_thorax(tmp_path, name):
    import nibabel as nib

    folder = real_ct("medseg2d") / name
    image = np.asanyarray(nib.load(folder / "image.nii.gz").dataobj)[..., 0]
    labels = np.asanyarray(nib.load(folder / "ggo_consolidation.nii.gz").dataobj)[..., 0]
    path = tmp_path / f"{name}.png"
    Image.fromarray(np.ascontiguousarray(image).astype(np.uint8)).save(path)
    lungs = segment_lungs(read_display_image(path))
    found = lungs.labels[0]  # a display image is read as shown: rows, columns
    assert found.shape == image.shape
    assert {RIGHT, LEFT} <= set(np.unique(found))
    # shown as radiologists do: the patient's right on the image's left; lungs touching at the
    # anterior junction are split there, not through a lung
    half = found.shape[1] // 2
    assert np.count_nonzero(found[:, half:] == RIGHT) < 0.05 * np.count_nonzero(found == RIGHT)
    assert np.count_nonzero(found[:, :half] == LEFT) < 0.05 * np.count_nonzero(found == LEFT)
    share = np.count_nonzero(found) / found.size
    assert 0.35 < share < 0.8  # lungs, not the whole crop, not a sliver
    lesions = labels > 0
    assert np.count_nonzero(found[lesions]) >= 0.9 * np.count_nonzero(lesions)
    assert "lungs reach the image edge (cropped scan): volumes may be partial" in lungs.notes
