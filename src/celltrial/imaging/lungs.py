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
OUTSIDE_AIR_HU = -975.0
MIN_LUNG_ML = 20.0
#: Main bronchi: small air regions up to this far (mm) below and beside the trachea's end.
BRONCHI_MM = 50.0
RIGHT, LEFT = 1, 2
ZONES = ("upper", "middle", "lower")
#: Voxels up to this many pixels beyond the hull of the aerated lung's voxel centres are inside.
HULL_TOLERANCE = 0.25
#: Radius of curvature (mm) assumed for the costal pleura between aerated points.
PLEURA_RADIUS_MM = 60.0
#: Hull facets whose outward normal points down more steeply than this cosine span the dome.
DOME_COS = 0.6
#: Holes in a slice's lung larger than this (mm²) are filled only with lung below them.
DOME_MIN_MM2 = 300.0
#: A slice's air region mostly darker than OUTSIDE_AIR_HU is bowel or outside gas, not lung.
GAS_SHARE = 0.5


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
    # outside air is mostly as dark as air gets; lung (even emphysematous) mostly is not
    darkest = np.bincount(
        labels.ravel(), weights=(smooth < OUTSIDE_AIR_HU).ravel(), minlength=n + 1
    )
    outside = darkest > 0.3 * np.maximum(sizes / voxel_ml, 1)
    keep = (sizes >= MIN_LUNG_ML * 0.25) & ~(edge & outside)
    keep[0] = False
    if edge[keep].any():
        notes.append("lungs reach the image edge (cropped scan): volumes may be partial")
    candidates = keep[labels]
    del labels
    airway = _grow_airway(smooth, candidates, spacing, notes)
    airway_ml = float(airway.sum()) * voxel_ml
    if airway.any():
        candidates &= ~ndi.binary_dilation(airway, iterations=2)
    carina = None
    if airway.any():
        low = int(np.flatnonzero(airway.any(axis=(1, 2))).min())
        carina = (low, float(np.nonzero(airway[low])[1].mean()))
    lungs = _two_lungs(candidates, smooth, spacing, voxel_ml, notes, volume.source, carina)
    filled = _fill_lungs(lungs, smooth, spacing, _midline(lungs > 0))
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
    for threshold in (-975.0, AIRWAY_HU, -930.0, -910.0, -890.0):
        region, _ = ndi.label(candidates & (smooth < threshold))
        value = region[seed[0], seed[1][0], seed[1][1]]
        if value == 0:
            continue
        airway = region == value
        volume_ml = float(airway.sum()) * voxel_ml
        if volume_ml > 250.0 or (best is not None and volume_ml > 2.0 * previous + 20.0):
            break
        best, previous = airway, volume_ml
    if best is None:
        notes.append("airway growing leaked into the lungs: trachea and bronchi not removed")
        return np.zeros_like(candidates)
    return best


def _midline(candidates: np.ndarray) -> float:
    """Column of the mediastinum: fewest air voxels in the central half of the image."""
    profile = candidates.sum(axis=(0, 1)).astype(float)
    nx = profile.size
    lo, hi = nx // 4, max(nx - nx // 4, nx // 4 + 1)
    window = max(3, nx // 20)
    smooth = np.convolve(profile, np.ones(window) / window, mode="same")
    return float(lo + np.argmin(smooth[lo:hi]))


def _two_lungs(candidates, smooth, spacing, voxel_ml, notes, source, carina=None) -> np.ndarray:
    """Right and left lungs: per slice, air regions go to the side of the mediastinum they lie
    on; a region reaching across (lungs touching at the anterior or posterior junction, or through
    a bronchus wall) is split by eroding it until it falls apart, else at the midline. Small air
    regions near the midline just below the trachea's end are main bronchi, not lung."""
    mid = _midline(candidates)
    nz, ny, nx = candidates.shape
    sides = np.zeros(candidates.shape, dtype=np.uint8)
    columns = np.arange(nx)
    min_px = max(4, int(25.0 / (spacing[1] * spacing[2])))
    split_any = False
    for k in range(nz):
        if not candidates[k].any():
            continue
        blobs, m = ndi.label(candidates[k])
        index = np.arange(1, m + 1)
        sizes = np.bincount(blobs.ravel(), minlength=m + 1)
        right_px = np.bincount(
            blobs.ravel(), weights=(columns < mid)[None, :].repeat(ny, 0).ravel(), minlength=m + 1
        )
        near_carina = carina is not None and (
            -BRONCHI_MM <= (k - carina[0]) * spacing[0] <= 2 * spacing[0]
        )
        if near_carina:
            cx = np.bincount(
                blobs.ravel(),
                weights=np.broadcast_to(columns, blobs.shape).ravel(),
                minlength=m + 1,
            ) / np.maximum(sizes, 1)
        largest = sizes[1:].max()
        gas = np.bincount(
            blobs.ravel(), weights=(smooth_k := smooth[k] < OUTSIDE_AIR_HU).ravel(), minlength=m + 1
        ) > GAS_SHARE * np.maximum(sizes, 1)
        del smooth_k
        for i in index:
            if sizes[i] < min_px or gas[i]:
                continue
            if (
                near_carina
                and sizes[i] < 0.15 * largest
                and (abs(cx[i] - carina[1]) * spacing[2] < BRONCHI_MM)
            ):
                continue
            share = right_px[i] / sizes[i]
            if min(share, 1 - share) * sizes[i] > max(min_px, 0.03 * sizes[i]):
                piece = blobs == i
                sides[k][piece] = _split_slice(piece, mid, spacing)[piece]
                split_any = True
            else:
                sides[k][blobs == i] = RIGHT if share >= 0.5 else LEFT
    if split_any:
        notes.append("right and left lungs touched; split at the junction")
    out = np.zeros(candidates.shape, dtype=np.uint8)
    found = []
    for value in (RIGHT, LEFT):
        labels, n = ndi.label(sides == value)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:] * voxel_ml
        biggest = sizes.max()
        if biggest < MIN_LUNG_ML:
            continue
        keep = np.concatenate([[False], sizes >= max(0.1 * biggest, MIN_LUNG_ML * 0.25)])
        out[keep[labels]] = value
        found.append(value)
    if not found:
        raise ImagingError(f"{source}: no lung-sized air region found inside the body")
    if len(found) == 1:
        notes.append(f"only one lung found ({'right' if found[0] == RIGHT else 'left'})")
    return out


def _split_slice(piece: np.ndarray, mid: float, spacing) -> np.ndarray:
    """Labels (RIGHT/LEFT) of a 2-D air region reaching across the midline."""
    columns = np.arange(piece.shape[1])[None, :]
    eroded = piece
    for _ in range(max(2, round(12.0 / spacing[2]))):
        eroded = ndi.binary_erosion(eroded)
        blobs, m = ndi.label(eroded)
        if m < 2:
            if m == 0:
                break
            continue
        sizes = np.bincount(blobs.ravel())[1:]
        index = np.arange(1, m + 1)
        cx = np.asarray(ndi.mean(np.broadcast_to(columns, piece.shape), blobs, index))
        right = sizes[cx < mid].max(initial=0)
        left = sizes[cx >= mid].max(initial=0)
        if min(right, left) >= 0.1 * max(right, left):
            markers = np.zeros(piece.shape, np.uint8)
            big_r = index[cx < mid][np.argmax(sizes[cx < mid])]
            big_l = index[cx >= mid][np.argmax(sizes[cx >= mid])]
            markers[blobs == big_r] = RIGHT
            markers[blobs == big_l] = LEFT
            _, (iy, ix) = ndi.distance_transform_edt(markers == 0, return_indices=True)
            return np.where(piece, markers[iy, ix], 0).astype(np.uint8)
    return np.where(piece, np.where(columns < mid, RIGHT, LEFT), 0).astype(np.uint8)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius)))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def _fill_lungs(lungs: np.ndarray, smooth: np.ndarray, spacing, mid: float) -> np.ndarray:
    """Per slice and lung: close, fill holes, fill chest-wall-side convex-hull bays."""
    from skimage.morphology import convex_hull_image

    out = np.zeros_like(lungs)
    closing = _disk(4.0 / spacing[1])
    pixel_mm2 = spacing[1] * spacing[2]
    pad = closing.shape[0]
    for value in (RIGHT, LEFT):
        # lung that holes may stand on: aerated lung and the large holes filled above it
        grounded = lungs == value
        for k in np.flatnonzero(grounded.any(axis=(1, 2))):
            sl = lungs[k] == value
            ys, xs = np.nonzero(sl)
            y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, sl.shape[0])
            x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, sl.shape[1])
            box = sl[y0:y1, x0:x1]
            shape = ndi.binary_closing(box, structure=closing) | box
            holes, m = ndi.label(ndi.binary_fill_holes(shape) & ~shape)
            if m:
                # a large hole is lung (vessels, a lesion) when lung lies below it; one that
                # opens downwards is the diaphragm's dome inside the costophrenic recess
                index = np.arange(1, m + 1)
                area = np.bincount(holes.ravel(), minlength=m + 1)[1:] * pixel_mm2
                below = grounded[k - 1, y0:y1, x0:x1] if k > 0 else np.zeros_like(box)
                share = np.asarray(ndi.mean(below, holes, index)) if k > 0 else np.zeros(m)
                large = np.concatenate([[False], share >= 0.5])[holes]
                grounded[k, y0:y1, x0:x1] |= large
                shape |= large | np.concatenate([[False], area < DOME_MIN_MM2])[holes]
            dense = smooth[k, y0:y1, x0:x1] > AIR_HU
            centre = (round(ys.mean()) - y0, round(xs.mean()) - x0)
            if box.sum() > 20 and shape[centre]:  # not for crescents around the dome
                hull = convex_hull_image(shape)
                bays, m = ndi.label(hull & ~shape)
                if m:
                    centre_x = xs.mean() - x0
                    index = np.arange(1, m + 1)
                    cx = np.array(ndi.center_of_mass(np.ones_like(bays), bays, index))[:, 1]
                    share = np.asarray(ndi.mean(dense, bays, index))
                    lateral = np.abs(cx + x0 - mid) >= np.abs(centre_x + x0 - mid) - 5
                    # a bay reaching the image's edge is where the scan cut the lung, not a bay
                    edge = np.zeros(m + 1, dtype=bool)
                    ny_, nx_ = lungs.shape[1:]
                    if y0 == 0:
                        edge[np.unique(bays[0])] = True
                    if x0 == 0:
                        edge[np.unique(bays[:, 0])] = True
                    if y1 == ny_:
                        edge[np.unique(bays[-1])] = True
                    if x1 == nx_:
                        edge[np.unique(bays[:, -1])] = True
                    add = np.concatenate([[False], lateral & (share > 0.6) & ~edge[1:]])
                    shape |= add[bays]
            target = out[k, y0:y1, x0:x1]
            target[shape & (target == 0)] = value
    _fill_pleural(out, smooth, spacing)
    return out


def _fill_pleural(out: np.ndarray, smooth: np.ndarray, spacing) -> None:
    """Dense lung against the chest wall that bulges past the chord of its slice's lung.

    The costal pleura is convex: each lung's 3-D convex hull (from the aerated, filled lung)
    follows the chest wall's inner surface above, below and beside a subpleural consolidation,
    even where the consolidation fills a slice's whole lateral edge. Hull voxels are added when
    dense but not bone, outside the slice's own 2-D hull (what the 2-D fill decides), on the
    lateral half of that slice's lung, and connected to the lung.
    """
    from scipy.spatial import ConvexHull, QhullError, cKDTree
    from skimage.morphology import convex_hull_image

    scale = np.asarray(spacing, dtype=float)
    for value in (RIGHT, LEFT):
        mask = out == value
        if mask.sum() < 50:
            continue
        zs, ys, xs = np.nonzero(mask)
        z0, z1 = zs.min(), zs.max() + 1
        y0, y1 = ys.min(), ys.max() + 1
        x0, x1 = xs.min(), xs.max() + 1
        box = mask[z0:z1, y0:y1, x0:x1]
        shell = box & ~ndi.binary_erosion(box)
        points = np.argwhere(shell)
        if points.shape[0] > 20000:
            points = points[:: points.shape[0] // 20000 + 1]
        try:
            hull = ConvexHull(points * scale)
        except (QhullError, ValueError):
            continue
        normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
        facets = cKDTree(hull.points[hull.simplices].mean(axis=1))
        n_near = min(24, len(offsets))
        # the hull's facets span the gap a consolidation leaves in the aerated pleura as chords,
        # inside the curved wall by about d² / 2R at a distance d from aerated pleura
        aerated = np.argwhere(shell & (smooth[z0:z1, y0:y1, x0:x1] < AIR_HU))
        if aerated.shape[0] > 30000:
            aerated = aerated[:: aerated.shape[0] // 30000 + 1]
        tree = cKDTree(aerated * scale) if len(aerated) else None
        dense = (smooth[z0:z1, y0:y1, x0:x1] > AIR_HU) & (smooth[z0:z1, y0:y1, x0:x1] < 200.0)
        dense &= out[z0:z1, y0:y1, x0:x1] == 0
        sign = -1.0 if value == RIGHT else 1.0
        for k in range(box.shape[0]):
            if not box[k].any() or not dense[k].any():
                dense[k] = False
                continue
            ys_k, xs_k = np.nonzero(box[k])
            cy, cx = ys_k.mean(), xs_k.mean()
            if not box[k][round(cy), round(cx)]:
                # a crescent (costophrenic recess around the dome, a lung cut by the scan's
                # edge): what its hull spans is not lung
                dense[k] = False
                continue
            lateral = sign * (np.arange(box.shape[2]) - cx) >= 0
            dense[k] &= lateral[None, :]
            if box[k].sum() > 20:
                dense[k] &= ~ndi.binary_erosion(convex_hull_image(box[k]), iterations=2)
        # grow from the lung through dense voxels inside the hull, testing only the front
        base = HULL_TOLERANCE * float(scale[1:].mean())
        cross = ndi.generate_binary_structure(3, 1)
        added = np.zeros(box.shape, dtype=bool)
        front = ndi.binary_dilation(box, structure=cross) & dense
        while front.any():
            dense &= ~front
            cand = np.argwhere(front)
            inside = np.ones(len(cand), dtype=bool)
            for start in range(0, len(cand), 20000):
                chunk = cand[start : start + 20000] * scale
                tolerance = np.full(len(chunk), base)
                if tree is not None:
                    distance, _ = tree.query(chunk)
                    tolerance += distance**2 / (2.0 * PLEURA_RADIUS_MM)
                # the facets that matter for a voxel near the hull are the nearest ones
                _, near = facets.query(chunk, k=n_near)
                near = near.reshape(len(chunk), n_near)
                signed = np.einsum("nkj,nj->nk", normals[near], chunk) + offsets[near]
                within = (signed <= tolerance[:, None]).all(axis=1)
                # under a facet that faces down the hull spans the diaphragm's dome: not lung
                facing = normals[near[np.arange(len(chunk)), np.argmax(signed, axis=1)], 0]
                inside[start : start + 20000] = within & (facing > -DOME_COS)
            new = np.zeros(box.shape, dtype=bool)
            new[tuple(cand[inside].T)] = True
            added |= new
            front = ndi.binary_dilation(new, structure=cross) & dense
        target = out[z0:z1, y0:y1, x0:x1]
        target[added] = value


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
