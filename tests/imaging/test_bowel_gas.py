"""Gas below the diaphragm joined to a lung base through a narrow bridge is not lung (issue 24:
colon gas met the left lung where 3 mm slices average the diaphragm away), while dark air that
has lung beneath it (a cavity opening into a lower lobe) stays lung."""

from __future__ import annotations

import numpy as np

from celltrial.imaging.io import CtVolume
from celltrial.imaging.lungs import LEFT, RIGHT, _under_skin, segment_lungs

SPACING = (3.0, 1.5, 1.5)
SHAPE = (48, 96, 112)


def _ellipsoid(centre, radii) -> np.ndarray:
    z, y, x = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    return sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii, strict=True)) <= 1


def _volume(hu: np.ndarray) -> CtVolume:
    return CtVolume(
        hu=hu,
        spacing=SPACING,
        source="synthetic chest",
        native_affine=np.diag([SPACING[2], SPACING[1], SPACING[0], 1.0]),
        native_shape=(SHAPE[2], SHAPE[1], SHAPE[0]),
        ornt=np.array([[0, 1], [1, 1], [2, 1]]),
    )


def _gas(hu: np.ndarray, region: np.ndarray) -> None:
    """Mottled gas in ``region``: air (−1000 HU) in bands with −700 HU content, so that a fifth
    of it stays darker than −975 HU after smoothing, as in the real colon (0.2–0.5) and below
    the share that marks a slice's air as gas (0.5)."""
    content = np.broadcast_to((np.arange(SHAPE[1]) % 5 >= 3)[None, :, None], SHAPE)
    hu[region] = np.where(content[region], -700, -1000)


def _body(left_lung: np.ndarray) -> np.ndarray:
    """A body (40 HU), a trachea, a right lung and ``left_lung`` (−850 HU)."""
    hu = np.full(SHAPE, -1000, dtype=np.int16)
    hu[_ellipsoid((24, 48, 56), (70, 40, 52))] = 40
    hu[30:, 36:44, 52:60] = -1000  # the trachea, where the airway search starts
    hu[_ellipsoid((27, 48, 33), (12, 24, 15))] = -850
    hu[left_lung] = -850
    return hu


def _chest_with_bowel(*, bridge: bool) -> tuple[CtVolume, np.ndarray]:
    """Lungs and, under the left base, a gas-filled loop, joined to it by a bridge 6 mm wide
    through the averaged-away diaphragm (or not); the loop's mask is returned too."""
    hu = _body(_ellipsoid((27, 48, 79), (12, 24, 15)))
    loop = _ellipsoid((8, 48, 79), (4, 14, 11))
    _gas(hu, loop)
    if bridge:
        hu[10:17, 46:50, 77:81] = -950
    return _volume(hu), loop


def test_gas_loop_under_a_lung_base_is_not_lung() -> None:
    volume, loop = _chest_with_bowel(bridge=True)
    labels = segment_lungs(volume).labels
    assert not labels[loop].any()
    # the lungs are those of the same chest without the bridge, but for the bridge's stump
    apart = segment_lungs(_chest_with_bowel(bridge=False)[0]).labels
    assert not apart[loop].any()
    assert np.count_nonzero(labels == RIGHT) == np.count_nonzero(apart == RIGHT)
    differ = np.count_nonzero(labels != apart)
    assert differ <= 0.01 * np.count_nonzero(apart == LEFT)


def test_dark_air_with_lung_beneath_stays_lung() -> None:
    # a lower lobe reaching the scan's bottom, and at its medial edge a walled cavity of mottled
    # air that opens into the lung above through a narrow bronchus: it lies in the lung's lowest
    # quarter, but lung lies under it, so it is not bowel
    hu = _body(_ellipsoid((24, 48, 79), (30, 24, 15)))
    hu[_ellipsoid((8, 48, 73), (4, 9, 8))] = 40
    cavity = _ellipsoid((8, 48, 73), (2, 7, 6))
    _gas(hu, cavity)
    hu[10:14, 46:50, 72:76] = -950
    labels = segment_lungs(_volume(hu)).labels
    assert np.count_nonzero(labels[cavity] == LEFT) > 0.9 * np.count_nonzero(cavity)


def test_air_under_the_skin_is_told_from_lung() -> None:
    # one slice of a body (1.5 mm pixels) cut by the image's bottom edge: air deep inside
    # (lung), air reaching the cut edge (a lung cut by the field of view) and air a few pixels
    # from the edge are lung; air 1.5–4.5 mm under the body's outline (a strip between the back
    # and a pad) is not
    body = np.zeros((1, 100, 120), dtype=bool)
    body[0, 5:100, 15:105] = True
    labels = np.zeros(body.shape, dtype=np.int32)
    labels[0, 96:99, 30:55] = 1
    labels[0, 30:60, 30:50] = 2
    labels[0, 40:100, 60:80] = 3
    spacing = (3.0, 1.5, 1.5)
    assert _under_skin(labels, 3, body, spacing).tolist() == [False, False, False, False]
    labels[0, 96:99, 30:55] = 0
    labels[0, 6:9, 30:90] = 1
    assert _under_skin(labels, 3, body, spacing).tolist() == [False, True, False, False]
