"""Lung segmentation that keeps diseased lung: air, airways removed, left/right, fills, zones.

Steps (on a grid of about 1.5 mm in-plane, refined back to full resolution at the boundary):
air below ``AIR_HU`` inside the body; outside air (touching the image edge and as dark as air) left
out; trachea and main bronchi grown from the trachea at ``AIRWAY_HU`` and removed; the two largest
components are the lungs (split at the anterior/posterior junction when they touch); each lung,
slice by slice, closed and hole-filled (vessels, inner lesions) and its convex-hull bays on the
chest-wall side filled (dense consolidation against the pleura, which a threshold loses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import CtVolume, ImagingError

AIR_HU = -400.0
AIRWAY_HU = -950.0
OUTSIDE_AIR_HU = -960.0
MIN_LUNG_ML = 20.0
RIGHT, LEFT = 1, 2
ZONES = ("upper", "middle", "lower")


@dataclass(frozen=True)
class LungMasks:
    """Lung labels (0 none, 1 right, 2 left) in the volume's internal orientation, and notes."""

    labels: np.ndarray
    notes: tuple[str, ...] = ()
    airway_ml: float = 0.0


def segment_lungs(volume: CtVolume, *, target_mm: float = 1.4) -> LungMasks:
    """Right and left lungs of a CT volume (see the module's description)."""
    hu = volume.hu
    factor = max(1, round(target_mm / max(volume.spacing[1], 1e-6)))
    coarse = _downsample(hu, factor)
    spacing = (volume.spacing[0], volume.spacing[1] * factor, volume.spacing[2] * factor)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    notes: list[str] = []
    smooth = ndi.gaussian_filter(coarse, (0, 0.7, 0.7)) if coarse.shape[1] > 8 else coarse
    air = smooth < AIR_HU
    labels, n = ndi.label(air)
    if n == 0:
        raise ImagingError(f"{volume.source}: no air-filled region found; is this a chest CT?")
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(float) * voxel_ml
    edge = np.zeros(n + 1, dtype=bool)
    for sl in (np.s_[:, 0, :], np.s_[:, -1, :], np.s_[:, :, 0], np.s_[:, :, -1]):
        edge[np.unique(labels[sl])] = True
    medians = ndi.median(smooth, labels, index=np.arange(n + 1))
    medians = np.asarray(medians, dtype=float)
    keep = (sizes >= MIN_LUNG_ML * 0.25) & ~(edge & (medians < OUTSIDE_AIR_HU))
    keep[0] = False
    if edge[keep].any():
        notes.append("lungs reach the image edge (cropped scan): volumes may be partial")
    candidates = keep[labels]
    del labels
    airway = _grow_airway(smooth, candidates, spacing, notes)
    airway_ml = float(airway.sum()) * voxel_ml
    if airway.any():
        candidates &= ~ndi.binary_dilation(airway, iterations=1)
    lungs = _two_lungs(candidates, spacing, voxel_ml, notes, volume.source)
    filled = _fill_lungs(lungs, smooth, spacing)
    full = _refine(filled, lungs, hu, factor) if factor > 1 else filled
    return LungMasks(full, tuple(notes), airway_ml)


def _downsample(hu: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return hu.astype(np.float32)
    nz, ny, nx = hu.shape
    cy, cx = ny // factor, nx // factor
    out = np.empty((nz, cy, cx), dtype=np.float32)
    for k in range(nz):
        block = hu[k, : cy * factor, : cx * factor].reshape(cy, factor, cx, factor)
        out[k] = block.mean(axis=(1, 3))
    return out


def _grow_airway(smooth, candidates, spacing, notes) -> np.ndarray:
    """Trachea and main bronchi: grown from a trachea seed in the upper slices at AIRWAY_HU."""
    nz = smooth.shape[0]
    pixel_mm2 = spacing[1] * spacing[2]
    seed = None
    for k in range(nz - 1, max(-1, nz - 1 - int(60 / spacing[0])), -1):
        blobs, m = ndi.label(candidates[k] & (smooth[k] < AIRWAY_HU))
        if m == 0:
            continue
        areas = np.bincount(blobs.ravel())[1:] * pixel_mm2
        centres = ndi.center_of_mass(np.ones_like(blobs), blobs, range(1, m + 1))
        mid = smooth.shape[2] / 2
        best = None
        for i, (area, (_, cx)) in enumerate(zip(areas, centres, strict=True), start=1):
            plausible = 80.0 <= area <= 900.0 and abs(cx - mid) * spacing[2] < 40.0
            if plausible and (best is None or abs(cx - mid) < abs(centres[best - 1][1] - mid)):
                best = i
        if best is not None:
            seed = (k, np.argwhere(blobs == best)[0])
            break
    if seed is None:
        notes.append("no trachea found in the upper slices: airways not removed")
        return np.zeros_like(candidates)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    best = None
    previous = 0.0
    # loosen the threshold step by step (partial volume at the carina and in oblique bronchi)
    # until the grown region explodes into the lung parenchyma
    for threshold in (-990.0, -975.0, AIRWAY_HU, -930.0, -910.0, -890.0):
        region, _ = ndi.label(candidates & (smooth < threshold))
        value = region[seed[0], seed[1][0], seed[1][1]]
        if value == 0:
            continue
        airway = region == value
        volume_ml = float(airway.sum()) * voxel_ml
        if volume_ml > 250.0 or (best is not None and volume_ml > 1.5 * previous + 15.0):
            break
        best, previous = airway, volume_ml
    if best is None:
        notes.append("airway growing leaked into the lungs: trachea and bronchi not removed")
        return np.zeros_like(candidates)
    return best


def _two_lungs(candidates, spacing, voxel_ml, notes, source) -> np.ndarray:
    labels, n = ndi.label(candidates)
    if n == 0:
        raise ImagingError(f"{source}: no lung-sized air region found inside the body")
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    order = np.argsort(sizes)[::-1]
    big = [i + 1 for i in order[:2] if sizes[i] >= MIN_LUNG_ML]
    if not big:
        raise ImagingError(
            f"{source}: the largest air region inside the body is {sizes.max():.0f} mL; "
            "no lungs found"
        )
    mid = candidates.shape[2] / 2
    if len(big) == 2 and sizes[big[1] - 1] < 0.15 * sizes[big[0] - 1]:
        xs = [ndi.center_of_mass(labels == b)[2] for b in big]
        if (xs[0] - mid) * (xs[1] - mid) > 0:  # both on one side: a fragment, not a lung
            big = big[:1]
    if len(big) == 1:
        mask = labels == big[0]
        xs_ = np.nonzero(mask)[2]
        if xs_.min() < mid - 10 < mid + 10 < xs_.max():
            split = _split_joined(mask)
            if split is not None:
                notes.append("right and left lungs touched; split at the junction")
                return split
        side = LEFT if xs_.mean() > mid else RIGHT
        notes.append(f"only one lung found ({'left' if side == LEFT else 'right'})")
        return (mask * side).astype(np.uint8)
    out = np.zeros(candidates.shape, dtype=np.uint8)
    centres = [ndi.center_of_mass(labels == b)[2] for b in big]
    right_first = centres[0] < centres[1]
    out[labels == big[0]] = RIGHT if right_first else LEFT
    out[labels == big[1]] = LEFT if right_first else RIGHT
    return out


def _split_joined(mask: np.ndarray) -> np.ndarray | None:
    eroded = mask
    for _ in range(6):
        eroded = ndi.binary_erosion(eroded, structure=np.ones((1, 3, 3), bool))
        labels, n = ndi.label(eroded)
        if n >= 2:
            sizes = np.bincount(labels.ravel())[1:]
            order = np.argsort(sizes)[::-1][:2]
            if sizes[order[1]] > 0.2 * sizes[order[0]]:
                markers = np.zeros(mask.shape, np.uint8)
                c0 = ndi.center_of_mass(labels == order[0] + 1)[2]
                c1 = ndi.center_of_mass(labels == order[1] + 1)[2]
                right, left = (order[0], order[1]) if c0 < c1 else (order[1], order[0])
                markers[labels == right + 1] = RIGHT
                markers[labels == left + 1] = LEFT
                _, (iz, iy, ix) = ndi.distance_transform_edt(markers == 0, return_indices=True)
                return np.where(mask, markers[iz, iy, ix], 0).astype(np.uint8)
    return None


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius)))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def _fill_lungs(lungs: np.ndarray, smooth: np.ndarray, spacing) -> np.ndarray:
    """Per slice and lung: close, fill holes, fill chest-wall-side convex-hull bays."""
    from skimage.morphology import convex_hull_image

    out = np.zeros_like(lungs)
    closing = _disk(4.0 / spacing[1])
    mid = lungs.shape[2] / 2
    pad = closing.shape[0]
    for value in (RIGHT, LEFT):
        for k in np.flatnonzero((lungs == value).any(axis=(1, 2))):
            sl = lungs[k] == value
            ys, xs = np.nonzero(sl)
            y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, sl.shape[0])
            x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, sl.shape[1])
            box = sl[y0:y1, x0:x1]
            shape = ndi.binary_closing(box, structure=closing) | box
            shape = ndi.binary_fill_holes(shape)
            dense = smooth[k, y0:y1, x0:x1] > AIR_HU
            if box.sum() > 20:
                hull = convex_hull_image(shape)
                bays, m = ndi.label(hull & ~shape)
                if m:
                    centre_x = xs.mean() - x0
                    index = np.arange(1, m + 1)
                    cx = np.array(ndi.center_of_mass(np.ones_like(bays), bays, index))[:, 1]
                    share = np.asarray(ndi.mean(dense, bays, index))
                    lateral = np.abs(cx + x0 - mid) >= np.abs(centre_x + x0 - mid) - 5
                    add = np.concatenate([[False], lateral & (share > 0.6)])
                    shape |= add[bays]
            target = out[k, y0:y1, x0:x1]
            target[shape & (target == 0)] = value
    _fill_columns(out, smooth, mid)
    return out


def _fill_columns(out: np.ndarray, smooth: np.ndarray, mid: float) -> None:
    """Dense chest-wall-side voxels with lung above and below them in the same column.

    A subpleural consolidation bulges past the chord a convex hull draws; the pleura above and
    below it (where the lung is aerated) still marks where the lung ends.
    """
    nz = out.shape[0]
    xs = np.arange(out.shape[2])
    for value in (RIGHT, LEFT):
        mask = out == value
        columns = mask.any(axis=0)
        if not columns.any():
            continue
        first = np.argmax(mask, axis=0)
        last = nz - 1 - np.argmax(mask[::-1], axis=0)
        centre = np.nonzero(columns)[1].mean()
        lateral = np.abs(xs - mid) >= np.abs(centre - mid)
        z = np.arange(nz)[:, None, None]
        between = columns & lateral[None, :] & (z > first) & (z < last)
        add = between & (out == 0) & (smooth > AIR_HU)
        out[add] = value


def _refine(filled: np.ndarray, air_lungs: np.ndarray, hu: np.ndarray, factor: int) -> np.ndarray:
    """Full-resolution labels: coarse interior kept, boundary voxels decided by their own HU."""
    full = np.zeros(hu.shape, dtype=np.uint8)
    ny, nx = filled.shape[1] * factor, filled.shape[2] * factor
    added = (filled > 0) & (air_lungs == 0)  # vessels, lesions, fills: kept as coarse
    for k in range(hu.shape[0]):
        coarse = filled[k]
        if not coarse.any():
            continue
        grown = ndi.grey_dilation(coarse, size=(3, 3))
        inner = ndi.binary_erosion(coarse > 0) & ~added[k]
        up = np.repeat(np.repeat(grown, factor, 0), factor, 1)
        keep = np.repeat(np.repeat(inner | added[k], factor, 0), factor, 1)
        band = (up > 0) & ~keep
        out = full[k, :ny, :nx]
        out[keep] = np.repeat(np.repeat(coarse, factor, 0), factor, 1)[keep]
        air = hu[k, :ny, :nx] < AIR_HU
        out[band & air] = up[band & air]
    return full


def compute_zones(lungs: np.ndarray) -> np.ndarray:
    """Zone of each lung voxel: 1 upper, 2 middle, 3 lower third of that lung's height."""
    zones = np.zeros(lungs.shape, dtype=np.uint8)
    for value in (RIGHT, LEFT):
        present = np.flatnonzero((lungs == value).any(axis=(1, 2)))
        if present.size == 0:
            continue
        bottom, top = present.min(), present.max() + 1
        edges = np.linspace(top, bottom, 4)  # z grows superior: upper third first
        for zone in range(3):
            hi, lo = round(edges[zone]), round(edges[zone + 1])
            part = lungs[lo:hi] == value
            zones[lo:hi][part] = zone + 1
    return zones


__all__ = ["LEFT", "RIGHT", "ZONES", "LungMasks", "compute_zones", "segment_lungs"]
