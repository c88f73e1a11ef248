"""Lesions inside the lungs: ground-glass opacity (1) and consolidation (2).

Two methods:

- ``"density"`` (true HU volumes): the density bands of ``bands.yaml`` after vessel suppression
  (thin bright structures removed by an in-plane opening) and a partial-volume rule (the rim of a
  consolidation, darker than the consolidation–lung midpoint, is neither ground-glass nor
  consolidation; brighter, it is consolidation). Processed in slabs to bound memory.
- ``"learned"`` (display images, approximate HU): the shipped gradient-boosted pixel model
  (``models/lesions.npz``, trained by ``scripts/train_ct_lesions.py``) slice by slice.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import CtVolume, ImagingError
from celltrial.imaging.quantify import load_bands
from celltrial.imaging.trees import BoostedTrees, read_boosted_trees

GROUND_GLASS, CONSOLIDATION = 1, 2
VESSEL_MM = 4.0  # in-plane opening radius: bright structures thinner than this are vessels
CORE_MM = 6.0  # a consolidation is at least 2 × this wide somewhere (vessel crossings are not)
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
    disk = _disk(radius)
    sigma = 0.6 if spacing[1] < 1.2 else 0.5
    present = np.flatnonzero(lungs.any(axis=(1, 2)))
    if present.size == 0:
        return out
    z0, z1 = int(present.min()), int(present.max()) + 1
    ys, xs = np.nonzero(lungs[z0:z1].any(axis=0))
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, hu.shape[1])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, hu.shape[2])
    box = np.s_[z0:z1, y0:y1, x0:x1]
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
    for start in range(z0, z1, slab):
        stop = min(start + slab, z1)
        inside = lungs[start:stop, y0:y1, x0:x1] > 0
        smooth = ndi.gaussian_filter(
            hu[start:stop, y0:y1, x0:x1].astype(np.float32), (0, sigma, sigma)
        )
        part = level[start - z0 : stop - z0]
        part += inside & (smooth >= ggo_low)
        part += inside & (smooth >= cons_mid)
        part += inside & (smooth >= cons_low)
        for k in range(part.shape[0]):
            if part[k].any():
                part[k] += 4 * ndi.binary_opening(part[k] > 0, structure=disk).astype(np.uint8)
    kept = level >= 4
    core = _drop_thin(kept & (level % 4 == 3), CORE_MM / spacing[1])
    del kept
    # pass 2: partial-volume rule around consolidation cores
    labels = np.zeros(level.shape, dtype=np.uint8)
    cross = ndi.generate_binary_structure(3, 1)
    for start in range(0, level.shape[0], slab):
        lo, hi = max(start - 1, 0), min(start + slab + 1, level.shape[0])
        lv, co = level[lo:hi], core[lo:hi]
        near = ndi.binary_dilation(co, structure=cross)
        cons = co | (near & (lv % 4 >= 2))
        ggo = (lv >= 4) & ~near & (lv % 4 >= 1) & (lv % 4 < 3)
        part = np.zeros(lv.shape, dtype=np.uint8)
        part[ggo] = GROUND_GLASS
        part[cons] = CONSOLIDATION
        a, b = start - lo, start - lo + min(slab, level.shape[0] - start)
        labels[start : start + (b - a)] = part[a:b]
    out[box] = labels
    return out


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
    model: BoostedTrees | None = None,
) -> np.ndarray:
    """Lesion labels from the learned pixel model, slice by slice, kept inside ``lungs``."""
    from celltrial.imaging.learning import compute_slice_labels, compute_slice_probabilities

    model = model or load_lesion_model()
    out = np.zeros(hu.shape, dtype=np.uint8)
    for k in range(hu.shape[0]):
        if lungs is not None and not lungs[k].any():
            continue
        probs = compute_slice_probabilities(model, hu[k].astype(np.float32), spacing[1])
        labels = compute_slice_labels(probs)
        if lungs is not None:
            labels[lungs[k] == 0] = 0
        out[k] = labels
    return out


def _drop_thin(mask: np.ndarray, min_depth: float) -> np.ndarray:
    """Components of ``mask`` (3-D) whose deepest in-plane point is at least ``min_depth`` px."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    depth = np.zeros(mask.shape, dtype=np.float32)
    for k in range(mask.shape[0]):
        if mask[k].any():
            depth[k] = ndi.distance_transform_edt(mask[k])
    deepest = np.asarray(ndi.maximum(depth, labels, np.arange(1, n + 1)))
    keep = np.concatenate([[False], deepest >= min_depth])
    return keep[labels]


def _disk(radius: float) -> np.ndarray:
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
