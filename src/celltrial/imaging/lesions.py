"""Lesions inside the lungs: ground-glass opacity (1) and consolidation (2).

Two methods:

- ``"density"`` (true HU volumes): the density bands of ``bands.yaml`` after vessel suppression
  (thin bright structures removed by an in-plane opening), a partial-volume rule (the rim of a
  consolidation, darker than the consolidation–lung midpoint, is neither ground-glass nor
  consolidation; brighter, it is consolidation), and a shell rule (ground-glass in lesions
  narrower than 3 mm everywhere is the partial-volume ring of a vessel or airway wall).
  Processed in slabs (which may run in threads) within the lungs' bounding box, to bound memory.
- ``"learned"`` (display images, approximate HU): slice by slice, the shipped lesion network
  (three small U-Nets averaged, ``models/lesions_unet.onnx``, trained by
  ``scripts/train_ct_unet.py``, run with onnxruntime). The gradient-boosted pixel model before it
  (``models/lesions.npz``, ``scripts/train_ct_lesions.py``) is kept as the accuracy benchmark's
  comparison.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import CtVolume, ImagingError
from celltrial.imaging.lungs import compute_bounding_box
from celltrial.imaging.parallel import map_threads
from celltrial.imaging.quantify import load_bands
from celltrial.imaging.trees import BoostedTrees, read_boosted_trees

GROUND_GLASS, CONSOLIDATION = 1, 2
VESSEL_MM = 4.0  # in-plane opening radius: bright structures thinner than this are vessels
CORE_MM = 6.0  # a consolidation is at least 2 × this wide somewhere (vessel crossings are not)
#: A lesion is at least 2 × this wide somewhere in a slice (3 mm, the Fleischner Society's
#: lower size of a nodule: smaller is a micronodule). Narrower ground-glass is the partial-volume
#: shell around a vessel or an airway wall (a ring a pixel or two thick), not a lesion.
SHELL_MM = 1.5
MODEL_FILE = "lesions.npz"


def segment_lesions(
    volume: CtVolume, lungs: np.ndarray, *, method: str = "auto", slab: int = 24
) -> np.ndarray:
    """Lesion labels (0 none, 1 ground-glass, 2 consolidation) inside ``lungs`` (labels > 0).

    ``method`` is ``"density"``, ``"learned"`` or ``"auto"`` (learned for approximate HU from
    display images, density for measured HU).
    """
    if method == "auto":
        method = "learned" if volume.approximate else "density"
    if method == "density":
        return compute_density_lesions(volume.hu, lungs, volume.spacing, slab=slab)
    if method == "learned":
        return compute_learned_lesions(volume.hu, lungs, volume.spacing)
    raise ImagingError(f"unknown lesion method {method!r}; expected auto, density or learned")


def compute_density_lesions(
    hu: np.ndarray, lungs: np.ndarray, spacing: tuple[float, float, float], *, slab: int = 24
) -> np.ndarray:
    """Density-band lesions with vessel suppression and the partial-volume rule (see module)."""
    bands = load_bands()["bands"]
    ggo_low = float(bands["ground_glass"][0])
    cons_low = float(bands["consolidation"][0])
    lung_hu = float(np.mean(bands["well_aerated"]))  # about −825
    cons_mid = (lung_hu + float(np.mean(bands["consolidation"]))) / 2  # partial-volume midpoint
    out = np.zeros(hu.shape, dtype=np.uint8)
    radius = VESSEL_MM / spacing[1]
    sigma = 0.6 if spacing[1] < 1.2 else 0.5
    present = np.flatnonzero(lungs.any(axis=(1, 2)))
    if present.size == 0:
        return out
    z0, z1 = int(present.min()), int(present.max()) + 1
    ys, xs = np.nonzero(lungs[z0:z1].any(axis=0))
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, hu.shape[1])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, hu.shape[2])
    # partial-volume midpoint between this scan's aerated lung and ground-glass, never below the
    # band's lower bound: voxels half lung, half ground-glass count half the time
    sample = hu[z0:z1:4, y0:y1, x0:x1][lungs[z0:z1:4, y0:y1, x0:x1] > 0]
    if sample.size:
        parenchyma = float(np.median(sample))
        ggo_mid = (parenchyma + float(np.mean(bands["ground_glass"]))) / 2
        ggo_low = max(ggo_low, min(ggo_mid, float(bands["ground_glass"][1]) - 100.0))
    # pass 1, by slabs: density level of each voxel (0 aerated, 1 ground-glass, 2 consolidation
    # rim, 3 consolidation) and whether it survives the vessel-suppressing opening (+4)
    level = np.zeros((z1 - z0, y1 - y0, x1 - x0), dtype=np.uint8)

    def level_slab(start: int) -> None:
        stop = min(start + slab, z1)
        inside = lungs[start:stop, y0:y1, x0:x1] > 0
        smooth = ndi.gaussian_filter(
            hu[start:stop, y0:y1, x0:x1].astype(np.float32), (0, sigma, sigma)
        )
        part = level[start - z0 : stop - z0]
        part += inside & (smooth >= ggo_low)
        part += inside & (smooth >= cons_mid)
        part += inside & (smooth >= cons_low)
        del inside, smooth
        for k in range(part.shape[0]):
            opened = _open_slice(part[k] > 0, radius)
            if opened is not None:
                part[k] += 4 * opened.astype(np.uint8)

    map_threads(level_slab, range(z0, z1, slab))  # slabs write disjoint parts of ``level``
    core = _drop_thin(level == 7, CORE_MM / spacing[1])  # kept (≥ 4) and consolidation (3)
    # pass 2, by slabs: partial-volume rule around consolidation cores
    cross = ndi.generate_binary_structure(3, 1)
    for start in range(0, level.shape[0], slab):
        stop = min(start + slab, level.shape[0])
        lv = level[start:stop]
        band = lv % 4
        ggo = (lv >= 4) & (band >= 1) & (band < 3)
        target = out[z0 + start : z0 + stop, y0:y1, x0:x1]
        lo, hi = max(start - 1, 0), min(stop + 1, level.shape[0])
        if core[lo:hi].any():
            # the dilation needs the slices either side of the slab
            near = ndi.binary_dilation(core[lo:hi], structure=cross)[
                start - lo : start - lo + stop - start
            ]
            cons = core[start:stop] | (near & (band >= 2))
            ggo &= ~near
            target[ggo] = GROUND_GLASS
            target[cons] = CONSOLIDATION
        else:
            target[ggo] = GROUND_GLASS
    _drop_shells(out[z0:z1, y0:y1, x0:x1], SHELL_MM / spacing[1])
    return out


def _drop_shells(labels: np.ndarray, min_depth: float) -> None:
    """Remove, in place, the ground-glass of lesion components (3-D, any label) nowhere
    ``min_depth`` px deep in a slice: rings and shells around bright tubes, which the opening
    keeps with the tube inside them. A thin rim attached to a wider lesion stays (same component).
    """
    wide = _drop_thin(labels > 0, min_depth)
    labels[(labels == GROUND_GLASS) & ~wide] = 0


def _open_slice(mask: np.ndarray, radius: float) -> np.ndarray | None:
    """Binary opening of a 2-D ``mask`` by the disk of ``radius`` px, computed only around what
    it holds.

    Identical to ``ndi.binary_opening(mask, structure=_disk(radius))``: outside the mask's
    bounding box grown by the disk's radius the opening is empty, and the erosion's zero border
    equals the zeros around the box. None when the opening is empty.
    """
    disk = _disk(radius)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r = disk.shape[0] // 2
    y0, y1 = max(rows[0] - r, 0), min(rows[-1] + r + 1, mask.shape[0])
    x0, x1 = max(cols[0] - r, 0), min(cols[-1] + r + 1, mask.shape[1])
    eroded = ndi.binary_erosion(mask[y0:y1, x0:x1], structure=disk)
    rows = np.flatnonzero(eroded.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(eroded.any(axis=0))
    # the dilation reaches at most r beyond the eroded pixels: compute it on that box only, as
    # "within the disk's radius of an eroded pixel" (exact: squared distances are integers)
    v0, v1 = max(rows[0] - r, 0), min(rows[-1] + r + 1, eroded.shape[0])
    u0, u1 = max(cols[0] - r, 0), min(cols[-1] + r + 1, eroded.shape[1])
    distance = ndi.distance_transform_edt(~eroded[v0:v1, u0:u1])
    opened = np.zeros(mask.shape, dtype=bool)
    within = np.rint(distance * distance) <= radius * radius + 1e-9  # as _disk decides
    opened[y0 + v0 : y0 + v1, x0 + u0 : x0 + u1] = within
    return opened


@cache
def load_lesion_model(path: str | None = None) -> BoostedTrees:
    """The shipped learned lesion model (or one at ``path``)."""
    if path is not None:
        return read_boosted_trees(Path(path))
    resource = resources.files("celltrial.imaging") / "models" / MODEL_FILE
    with resources.as_file(resource) as file:
        if not file.exists():
            raise ImagingError(
                f"the learned lesion model {MODEL_FILE} is not installed; "
                "run scripts/train_ct_lesions.py or use method='density'"
            )
        return read_boosted_trees(file)


def compute_learned_lesions(
    hu: np.ndarray,
    lungs: np.ndarray | None,
    spacing: tuple[float, float, float],
    *,
    network=None,
    keep_outside: bool = False,
) -> np.ndarray:
    """Lesion labels from the lesion network (:mod:`celltrial.imaging.network`), slice by slice
    (those holding lung), kept inside ``lungs`` unless ``keep_outside``."""
    from celltrial.imaging.learning import compute_slice_labels
    from celltrial.imaging.network import compute_network_probabilities

    out = np.zeros(hu.shape, dtype=np.uint8)
    todo = [k for k in range(hu.shape[0]) if lungs is None or lungs[k].any()]
    for start in range(0, len(todo), _NETWORK_CHUNK):
        chunk = todo[start : start + _NETWORK_CHUNK]
        learned = compute_network_probabilities(hu[chunk], network=network)
        for k, probabilities in zip(chunk, learned, strict=True):
            labels = compute_slice_labels(probabilities)
            if lungs is not None and not keep_outside:
                labels[lungs[k] == 0] = 0
            out[k] = labels
    return out


#: Slices handed to the lesion network at a time (bounds the probabilities held at once).
_NETWORK_CHUNK = 16


def _drop_thin(mask: np.ndarray, min_depth: float) -> np.ndarray:
    """Components of ``mask`` (3-D) whose deepest in-plane point is at least ``min_depth`` px.

    The in-plane depth (distance to the nearest background pixel of the slice) is computed per
    slice on the mask's bounding box; the components holding a deep enough voxel are grown back
    from those voxels (same 6-connectivity as ``ndi.label``), with no label or depth volume.
    """
    out = np.zeros(mask.shape, dtype=bool)
    box = compute_bounding_box(mask, margin=1)  # the background ring the distances need
    mask = mask[box]
    deep = np.zeros(mask.shape, dtype=bool)
    for k in range(mask.shape[0]):
        rows = np.flatnonzero(mask[k].any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(mask[k].any(axis=0))
        # one background pixel around the box keeps the distances of the whole slice
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[1])
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[2])
        depth = ndi.distance_transform_edt(mask[k, y0:y1, x0:x1]).astype(np.float32)
        deep[k, y0:y1, x0:x1] = depth >= min_depth
    if deep.any():
        out[box] = ndi.binary_propagation(deep, mask=mask)
    return out


@cache
def _disk(radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the centre (the opening's structuring element)."""
    r = max(1, int(np.floor(radius)))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius + 1e-9


__all__ = [
    "CONSOLIDATION",
    "GROUND_GLASS",
    "compute_density_lesions",
    "compute_learned_lesions",
    "load_lesion_model",
    "segment_lesions",
]
