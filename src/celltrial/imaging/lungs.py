"""Lung segmentation that keeps diseased lung: air, airways removed, left/right, fills, zones.

Steps (on a grid of about 1.5 mm in-plane, refined back to full resolution at the boundary):
the body first (the largest component denser than ``BODY_HU``, each slice's holes filled; padding
below −1024 HU read as air, so outside the body; issue 24), then air below ``AIR_HU`` inside it;
outside air (touching the image edge and as dark as air) left out; trachea and main bronchi grown
from the trachea and removed; the two largest components are the lungs (split at the
anterior/posterior junction when they touch; further components below the largest one's lower
quarter are gas under the diaphragm, and so is dark gas joined to a lung's base only through a
narrow neck with no lung beneath it, such as colon gas where thick slices average the diaphragm
away); each lung, slice by slice, closed and hole-filled (vessels, inner lesions) and its
convex-hull bays on the chest-wall side filled when lung lies below them (dense consolidation
against the pleura, which a threshold loses, but not the liver or spleen under the dome's
crescent of lung); the result kept within the body. Display images (approximate
HU, often cropped through the body) skip the body.

Memory and time (issue 10): the full-resolution volume is only read, never copied; the coarse
grid is made slab by slab, whole-volume counts and lookups go by slabs, and per-slice work stays
within bounding boxes, so the labels returned are the only full-resolution array made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import CtVolume, ImagingError
from celltrial.imaging.parallel import map_threads

AIR_HU = -400.0
AIRWAY_HU = -950.0
OUTSIDE_AIR_HU = -975.0
#: The trachea is looked for in the top this many mm of the air inside the body, as air below
#: TRACHEA_SEED_HU.
TRACHEA_SEARCH_MM = 100.0
TRACHEA_SEED_HU = -900.0
MIN_LUNG_ML = 20.0
#: In a stack too thin to hold MIN_LUNG_ML (a single slice, a few slices), a lung has at least
#: this area (mm²) in each slice instead.
MIN_LUNG_MM2 = 800.0
#: Main bronchi: small air regions up to this far (mm) below and beside the trachea's end.
BRONCHI_MM = 50.0
RIGHT, LEFT = 1, 2
ZONES = ("upper", "middle", "lower")
#: Voxels up to this many pixels beyond the hull of the aerated lung's voxel centres are inside.
HULL_TOLERANCE = 0.25
#: Radius of curvature (mm) assumed for the costal pleura between aerated points.
PLEURA_RADIUS_MM = 60.0
#: Hull facets whose outward normal points down more steeply than this cosine span the dome.
DOME_COS = 0.4
#: Holes in a slice's lung larger than this (mm²) are filled only with lung below them.
DOME_MIN_MM2 = 300.0
#: A slice's air region mostly darker than OUTSIDE_AIR_HU is bowel or outside gas, not lung.
GAS_SHARE = 0.5
#: Tissue denser than this (HU) makes the body (skin, muscle, fat at about −100, bone).
BODY_HU = -500.0
#: Air touching the image's edge with more than this share inside the convex hull of the body's
#: slice is lung cut by the field of view, not outside air.
CUT_HULL_SHARE = 0.6
#: ... and reaches this deep (mm, area over the length of its contact with the edge).
CUT_DEPTH_MM = 15.0
#: Air lying mostly within this depth (mm) under the body's outline is outside the chest wall.
SKIN_MM = 6.0
#: A lung's further air component (beside its largest) whose centre lies below this share of the
#: largest one's height (from its base) is bowel or stomach gas under the diaphragm.
GAS_BELOW_SHARE = 0.25
#: A part of a slice's lung, apart from the rest, with less than this share of its voxels below
#: AIR_HU is soft tissue (liver under a basal recess), not lung.
AIRLESS_SHARE = 0.02
#: Air joined to a lung through a neck narrower than twice this (mm) is looked at apart ...
NECK_MM = 3.0
#: ... and is gas (bowel, stomach) when this share of its core is darker than OUTSIDE_AIR_HU.
GAS_CORE_SHARE = 0.1
#: ... unless the lung reaches below it under this share of its footprint (a cavity, a bronchus).
LUNG_UNDER_SHARE = 0.5
#: The air is split between lung and gas within this distance (mm) of the gas's core.
GAS_REACH_MM = 20.0


@dataclass(frozen=True)
class LungMasks:
    """Lung labels (0 none, 1 right, 2 left) in the volume's internal orientation, and notes."""

    labels: np.ndarray
    notes: tuple[str, ...] = ()
    airway_ml: float = 0.0
    #: Share of the lungs' slices in which a lung reaches the edge of the field of view.
    cut_share: float = 0.0


def segment_lungs(volume: CtVolume, *, target_mm: float = 1.4) -> LungMasks:
    """Right and left lungs of a CT volume (see the module's description)."""
    hu = volume.hu
    factor = max(1, round(target_mm / max(volume.spacing[1], 1e-6)))
    # padding (−2048, −3024) is read as air, outside the body; display images' approximate HU
    # run below −1024 by their window and are left as they are
    smooth = _downsample(hu, factor, sigma=0.7, floor=None if volume.approximate else -1024)
    spacing = (volume.spacing[0], volume.spacing[1] * factor, volume.spacing[2] * factor)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    min_ml = min(MIN_LUNG_ML, MIN_LUNG_MM2 * hu.shape[0] * spacing[0] / 1000.0)
    notes: list[str] = []
    # display images are often cropped through the body: their body outline says nothing
    body = None if volume.approximate else _body_mask(smooth, spacing)
    air = smooth < AIR_HU
    if body is not None:
        air &= body
    labels, n = ndi.label(air)
    del air
    if n == 0:
        raise ImagingError(f"{volume.source}: no air-filled region found; is this a chest CT?")
    # display images (approximate HU): how dark air is says nothing (the window saturates)
    dark_hu = -np.inf if volume.approximate else OUTSIDE_AIR_HU
    counts, dark = _count_components(labels, n, smooth, dark_hu)
    sizes = counts.astype(float) * voxel_ml
    edge = np.zeros(n + 1, dtype=bool)
    for sl in (np.s_[:, 0, :], np.s_[:, -1, :], np.s_[:, :, 0], np.s_[:, :, -1]):
        edge[np.unique(labels[sl])] = True
    # outside air is mostly as dark as air gets; lung (even emphysematous) mostly is not; on a
    # display image, outside air is what surrounds the body: it holds three of the image's
    # corners or four (a lung of a scan cropped to the thorax may reach edges, rarely corners)
    outside = dark > 0.3 * np.maximum(sizes / voxel_ml, 1)
    if volume.approximate:
        corners = np.zeros(n + 1, dtype=np.int8)
        for row, column in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            corners[np.unique(labels[:, row, column])] += 1
        outside = corners >= 3
    keep = (sizes >= min_ml * 0.25) & ~(edge & outside)
    keep[0] = False
    if body is not None and keep.any():
        keep &= ~_under_skin(labels, n, body, spacing)
    if edge[keep].any():
        notes.append("lungs reach the image edge (cropped scan): volumes may be partial")
    candidates = _lookup(keep, labels)
    del labels
    region = compute_bounding_box(candidates)  # air inside the body: all that follows lies within
    if volume.approximate:
        # grown by its darkness, the airway would take the lungs of a display image with it
        # (the window saturates); small dark regions such as the trachea are left out by size
        airway = np.zeros_like(candidates)
        notes.append("display image: airways not grown and removed")
    else:
        airway = _grow_airway(smooth, candidates, region, spacing, notes)
    airway_ml = float(np.count_nonzero(airway)) * voxel_ml
    carina = None
    if airway_ml > 0:
        box = compute_bounding_box(airway, margin=2)
        candidates[box] &= ~ndi.binary_dilation(airway[box], iterations=2)
        low = int(np.flatnonzero(airway.any(axis=(1, 2))).min())
        carina = (low, float(np.nonzero(airway[low])[1].mean()))
    del airway
    lungs = _two_lungs(
        candidates,
        smooth,
        spacing,
        voxel_ml,
        notes,
        volume.source,
        carina,
        region=region,
        min_ml=min_ml,
        gas_hu=dark_hu,
    )
    del candidates
    filled = _fill_lungs(lungs, smooth, spacing, _midline(lungs > 0))
    _drop_airless(filled, smooth)
    del smooth
    if body is not None:
        filled[~body] = 0
    cut = _cut_share(filled)
    full = _refine(filled, lungs, hu, factor) if factor > 1 else filled
    return LungMasks(full, tuple(notes), airway_ml, cut)


def _body_mask(smooth: np.ndarray, spacing) -> np.ndarray:
    """The body, slice by slice filled: what lies inside the skin, the lungs included.

    The largest 3-D component denser than ``BODY_HU`` (the table, a blanket and the arms of
    another component are left out), each slice's holes filled. Outside air, the mattress under
    the patient and padding beyond the field of view touch the image's edge and stay outside;
    air touching the edge but lying mostly inside the convex hull of the body's slice is lung
    cut by the field of view and is kept (the cut is then reported by :func:`_cut_share`) when
    it reaches at least ``CUT_DEPTH_MM`` deep on average from the edge (outside air left between
    a body wider than the image and its edge is a thin strip).
    """
    depth_px = CUT_DEPTH_MM / max(spacing[1], 1e-6)
    labels, n = ndi.label(smooth > BODY_HU)
    if n == 0:
        return np.zeros(smooth.shape, dtype=bool)
    sizes = _count_components(labels, n)[0]
    sizes[0] = 0
    keep = np.zeros(n + 1, dtype=bool)
    keep[int(np.argmax(sizes))] = True
    tissue = _lookup(keep, labels)
    del labels
    body = np.zeros(smooth.shape, dtype=bool)

    def fill(k: int) -> None:
        if not tissue[k].any():
            return
        # the regions around the tissue: holes (inside) unless they touch the image's edge
        outside, m = ndi.label(~tissue[k])
        filled = tissue[k].copy()
        if m:
            contact = np.zeros(m + 1, dtype=np.int64)
            for edge in (outside[0], outside[-1], outside[:, 0], outside[:, -1]):
                contact += np.bincount(edge, minlength=m + 1)
            border = contact > 0
            border[0] = False
            hole = ~border
            hole[0] = False
            filled |= hole[outside]
            count = np.bincount(outside.ravel(), minlength=m + 1)
            dark = np.bincount(outside[smooth[k] < OUTSIDE_AIR_HU], minlength=m + 1)
            cut = border & (count >= depth_px * contact) & (dark < GAS_SHARE * count)
            if cut.any():  # the hull only for what may be cut lung (outside air is dark)
                inside = np.bincount(outside[_hull_image(tissue[k])], minlength=m + 1)
                cut &= inside > CUT_HULL_SHARE * count
                filled |= cut[outside]
        body[k] = filled

    map_threads(
        lambda start: [fill(k) for k in range(start, min(start + SLAB, smooth.shape[0]))],
        range(0, smooth.shape[0], SLAB),
    )
    return body


def _under_skin(labels: np.ndarray, n: int, body: np.ndarray, spacing) -> np.ndarray:
    """Air components (0..n) lying mostly within ``SKIN_MM`` of the body's outline: air caught
    between the skin and a pad, a blanket or the table (issue 24: a strip under a patient's back
    as lung). The lungs lie inside the chest wall, which is thicker than that."""
    step = max(1, round(SKIN_MM / max(spacing[1], 1e-6)))
    # in-plane erosion, slab by slab; the image's edge does not erode (a lung cut by the field
    # of view reaches it)
    deep = np.empty(body.shape, dtype=bool)
    plane = np.ones((1, 3, 3), dtype=bool)
    for start in range(0, body.shape[0], SLAB):
        part = body[start : start + SLAB]
        deep[start : start + SLAB] = ndi.binary_erosion(
            part, structure=plane, iterations=step, border_value=1
        )
    sizes, shallow = _count_components(labels, n, deep, 0.5)  # voxels not deep
    out = shallow > 0.5 * np.maximum(sizes, 1)
    out[0] = False
    return out


def _cut_share(lungs: np.ndarray) -> float:
    """Share of the slices holding lung in which the lungs reach the image's edge."""
    present = lungs.any(axis=(1, 2))
    if not present.any():
        return 0.0
    edge = (
        lungs[:, 0, :].any(axis=1)
        | lungs[:, -1, :].any(axis=1)
        | lungs[:, :, 0].any(axis=1)
        | lungs[:, :, -1].any(axis=1)
    )
    return float(np.count_nonzero(edge & present)) / float(np.count_nonzero(present))


#: Slices per slab where whole-volume temporaries would cost more than the volume itself.
SLAB = 16


def _downsample(
    hu: np.ndarray, factor: int, *, sigma: float, floor: int | None = None
) -> np.ndarray:
    """Block means of ``factor`` × ``factor`` pixels (float32), smoothed in plane, by slabs.

    Slab by slab (slabs may run in threads, see :mod:`celltrial.imaging.parallel`) so that
    neither a float copy of the full-resolution volume nor a second coarse volume is made; a
    Gaussian of σ (0, s, s) smooths each slice on its own.
    """
    nz, ny, nx = hu.shape
    cy, cx = ny // factor, nx // factor
    out = np.empty((nz, cy, cx), dtype=np.float32)
    area = float(factor * factor)

    def slab(start: int) -> None:
        part = hu[start : start + SLAB]
        if floor is not None:  # values below ``floor`` read as ``floor`` (a copy of the slab)
            part = np.maximum(part, np.int16(floor))
        if factor == 1:
            block = part.astype(np.float32)
        else:
            # the sum of integers is exact, so sum / area equals the float64 block mean
            total = np.zeros((part.shape[0], cy, cx), dtype=np.int32)
            for dy in range(factor):
                for dx in range(factor):
                    total += part[:, dy : cy * factor : factor, dx : cx * factor : factor]
            block = (total / area).astype(np.float32)
        if cy > 8:
            ndi.gaussian_filter(block, (0, sigma, sigma), output=out[start : start + SLAB])
        else:
            out[start : start + SLAB] = block

    map_threads(slab, range(0, nz, SLAB))
    return out


def _count_components(
    labels: np.ndarray, n: int, values: np.ndarray | None = None, below: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of each label (0..n) and those of them whose ``values`` are below ``below``.

    Counted slab by slab: ``np.bincount`` copies its input as 64-bit integers, which for the
    whole volume would cost twice an int32 label volume.
    """
    sizes = np.zeros(n + 1, dtype=np.int64)
    dark = np.zeros(n + 1, dtype=np.float64)
    for start in range(0, labels.shape[0], SLAB):
        part = labels[start : start + SLAB]
        sizes += np.bincount(part.ravel(), minlength=n + 1)
        if values is not None:
            dark += np.bincount(part[values[start : start + SLAB] < below], minlength=n + 1)
    return sizes, dark


def _lookup(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``table[labels]`` slab by slab (fancy indexing copies the labels as 64-bit indices)."""
    out = np.empty(labels.shape, dtype=table.dtype)
    for start in range(0, labels.shape[0], SLAB):
        out[start : start + SLAB] = table[labels[start : start + SLAB]]
    return out


def compute_bounding_box(mask: np.ndarray, *, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``'s True voxels, grown by ``margin``."""
    first = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))))
    if first.size == 0:
        return tuple(slice(0, 0) for _ in range(mask.ndim))
    # the other axes' extents from the projection of the first axis's occupied range only
    plane = mask[first[0] : first[-1] + 1].any(axis=0)
    box = [(int(first[0]), int(first[-1]))]
    for axis in range(plane.ndim):
        other = tuple(a for a in range(plane.ndim) if a != axis)
        found = np.flatnonzero(plane.any(axis=other))
        box.append((int(found[0]), int(found[-1])))
    return tuple(
        slice(max(lo - margin, 0), min(hi + margin + 1, size))
        for (lo, hi), size in zip(box, mask.shape, strict=True)
    )


def _grow_airway(smooth, candidates, box, spacing, notes) -> np.ndarray:
    """Trachea and main bronchi: grown from a trachea seed in the upper slices at AIRWAY_HU."""
    nz = smooth.shape[0]
    pixel_mm2 = spacing[1] * spacing[2]
    seed = None
    # the trachea's air in a low-dose scan's neck is noisy: seed at TRACHEA_SEED_HU
    for k in range(nz - 1, max(-1, nz - 1 - int(TRACHEA_SEARCH_MM / spacing[0])), -1):
        blobs, m = ndi.label(candidates[k] & (smooth[k] < TRACHEA_SEED_HU))
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
    # the airway is a component of the candidates: label only within their bounding box
    at = (seed[0] - box[0].start, seed[1][0] - box[1].start, seed[1][1] - box[2].start)
    inside, dark = candidates[box], smooth[box]
    # loosen the threshold step by step (partial volume at the carina and in oblique bronchi)
    # until the grown region explodes into the lung parenchyma
    for threshold in (-975.0, AIRWAY_HU, -930.0, -910.0, -890.0):
        region, _ = ndi.label(inside & (dark < threshold))
        value = region[at]
        if value == 0:
            continue
        airway = region == value
        del region
        volume_ml = float(np.count_nonzero(airway)) * voxel_ml
        if volume_ml > 250.0 or (best is not None and volume_ml > 2.0 * previous + 20.0):
            break
        best, previous = airway, volume_ml
    if best is None:
        notes.append("airway growing leaked into the lungs: trachea and bronchi not removed")
        return np.zeros_like(candidates)
    out = np.zeros_like(candidates)
    out[box] = best
    return out


def _midline(candidates: np.ndarray) -> float:
    """Column of the mediastinum: fewest air voxels in the central half of the image."""
    profile = candidates.sum(axis=(0, 1)).astype(float)
    nx = profile.size
    lo, hi = nx // 4, max(nx - nx // 4, nx // 4 + 1)
    window = max(3, nx // 20)
    smooth = np.convolve(profile, np.ones(window) / window, mode="same")
    return float(lo + np.argmin(smooth[lo:hi]))


def _two_lungs(
    candidates,
    smooth,
    spacing,
    voxel_ml,
    notes,
    source,
    carina=None,
    *,
    region=None,
    min_ml: float = MIN_LUNG_ML,
    gas_hu: float = OUTSIDE_AIR_HU,
) -> np.ndarray:
    """Right and left lungs: per slice, air regions go to the side of the mediastinum they lie
    on; a region reaching across (lungs touching at the anterior or posterior junction, or through
    a bronchus wall) is split by eroding it until it falls apart, else at the midline. Small air
    regions near the midline just below the trachea's end are main bronchi, not lung."""
    mid = _midline(candidates)
    nz, _, nx = candidates.shape
    sides = np.zeros(candidates.shape, dtype=np.uint8)
    columns = np.arange(nx)
    n_right = int(np.count_nonzero(columns < mid))  # columns on the patient's right
    min_px = max(4, int(25.0 / (spacing[1] * spacing[2])))
    split_any = False
    for k in range(nz):
        if not candidates[k].any():
            continue
        blobs, m = ndi.label(candidates[k])
        sizes = np.bincount(blobs.ravel(), minlength=m + 1)
        right_px = np.bincount(blobs[:, :n_right].ravel(), minlength=m + 1)
        gas = np.bincount(blobs[smooth[k] < gas_hu], minlength=m + 1) > GAS_SHARE * np.maximum(
            sizes, 1
        )
        skip = (sizes < min_px) | gas
        skip[0] = True
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
            skip |= (sizes < 0.15 * largest) & (np.abs(cx - carina[1]) * spacing[2] < BRONCHI_MM)
        share = right_px / np.maximum(sizes, 1)
        across = ~skip & (np.minimum(share, 1 - share) * sizes > np.maximum(min_px, 0.03 * sizes))
        side = np.where(share >= 0.5, RIGHT, LEFT).astype(np.uint8)
        side[skip | across] = 0
        sides[k] = side[blobs]
        for i in np.flatnonzero(across):
            piece = blobs == i
            sides[k][piece] = _split_slice(piece, mid, spacing)[piece]
            split_any = True
    if split_any:
        notes.append("right and left lungs touched; split at the junction")
    out = np.zeros(candidates.shape, dtype=np.uint8)
    found = []
    # components lie within the candidates' bounding box: label only there
    box = region if region is not None else compute_bounding_box(candidates)
    for value in (RIGHT, LEFT):
        labels, n = ndi.label(sides[box] == value)
        if n == 0:
            continue
        sizes = _count_components(labels, n)[0][1:] * voxel_ml
        biggest = sizes.max()
        if biggest < min_ml:
            continue
        lung = _lookup(_lung_components(labels, n, sizes, min_ml), labels)
        del labels
        if np.isfinite(gas_hu) and _drop_gas_through_neck(lung, smooth[box], spacing, gas_hu):
            # what the gas held together falls apart: the same rules on what is left
            labels, n = ndi.label(lung)
            sizes = _count_components(labels, n)[0][1:] * voxel_ml
            if n == 0 or sizes.max() < min_ml:
                continue
            lung = _lookup(_lung_components(labels, n, sizes, min_ml), labels)
            del labels
        out[box][lung] = value
        found.append(value)
    if not found:
        raise ImagingError(
            f"{source}: no lung-sized air region found inside the body; not a chest CT?"
        )
    if len(found) == 1:
        notes.append(f"only one lung found ({'right' if found[0] == RIGHT else 'left'})")
    return out


def _lung_components(labels: np.ndarray, n: int, sizes: np.ndarray, min_ml: float) -> np.ndarray:
    """Components (0..n) of one side's air that are lung: large enough beside the largest
    (``sizes`` in mL, of 1..n) and not under its base."""
    keep = np.concatenate([[False], sizes >= max(0.1 * sizes.max(), min_ml * 0.25)])
    keep &= _not_below(labels, n, int(np.argmax(sizes)) + 1)
    return keep


def _drop_gas_through_neck(lung: np.ndarray, smooth: np.ndarray, spacing, gas_hu: float) -> bool:
    """Remove from one lung's air (in place) gas joined to it only through a narrow neck and
    lying under it: colon or stomach gas meeting a lung base where the thin diaphragm is
    averaged away (issue 24). True when some was removed.

    The air is eroded by an ellipsoid of ``NECK_MM`` radius: a neck thinner than twice that
    parts it into cores. A core is gas under the diaphragm when (1) at least
    ``GAS_CORE_SHARE`` of it is darker than ``gas_hu`` (pure gas; lung parenchyma, with vessels
    averaged in, is rarely that dark), (2) its centre lies below the lower quarter of the largest
    other core, the lung (:data:`GAS_BELOW_SHARE`), and (3) under less than
    ``LUNG_UNDER_SHARE`` of its footprint (in the axial plane) does that lung reach lower: bowel
    lies under the diaphragm, while a cavity, a bulla or a bronchus of a lower lobe has lung
    beneath it. Only then is the air split between the cores along its necks (watershed of the
    distance to its border, near the gas) and the gas cores' parts removed.
    """
    if not lung.any():
        return False
    box = compute_bounding_box(lung, margin=1)
    part, dark = lung[box], smooth[box]
    radius = [max(1, round(NECK_MM / max(s, 1e-6))) for s in spacing]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius, strict=True)) <= 1.0
    cores, m = ndi.label(ndi.binary_erosion(part, structure=ball))
    if m < 2:
        return False
    size = np.bincount(cores.ravel(), minlength=m + 1).astype(float)
    gas = np.bincount(cores[dark < gas_hu], minlength=m + 1) >= GAS_CORE_SHARE * size
    gas[0] = False
    if not gas.any():
        return False
    z = np.arange(part.shape[0], dtype=float)
    per_slice = np.stack([np.bincount(cores[k].ravel(), minlength=m + 1) for k in range(len(z))])
    centre = (per_slice * z[:, None]).sum(axis=0) / np.maximum(size, 1)
    size[0] = 0
    lung_cores = np.flatnonzero(~gas & (size > 0))
    if lung_cores.size == 0:
        return False
    main = lung_cores[np.argmax(size[lung_cores])]
    present = np.flatnonzero(per_slice[:, main])
    floor = present[0] + GAS_BELOW_SHARE * (present[-1] - present[0])
    drop = gas & (centre < floor)
    if not drop.any():
        return False
    # the lowest slice of the lung in each column of the axial plane (nz where none)
    is_main = cores == main
    lung_low = np.where(is_main.any(axis=0), np.argmax(is_main, axis=0), part.shape[0])
    del is_main
    for index in np.flatnonzero(drop):
        core = cores == index
        foot = core.any(axis=0)
        under = lung_low[foot] < np.argmax(core, axis=0)[foot]
        drop[index] = np.count_nonzero(under) < LUNG_UNDER_SHARE * under.size
    if not drop.any():
        return False
    from skimage.segmentation import watershed

    # the split near the gas only (what it leaves of a piece beyond falls apart and is judged as
    # a component of its own)
    reach = [max(1, round(GAS_REACH_MM / max(s, 1e-6))) for s in spacing]
    near = compute_bounding_box(drop[cores], margin=0)
    near = tuple(
        slice(max(sl.start - r, 0), min(sl.stop + r, n))
        for sl, r, n in zip(near, reach, part.shape, strict=True)
    )
    depth = ndi.distance_transform_edt(part[near], sampling=spacing)
    pieces = watershed(-depth, cores[near], mask=part[near])
    part[near] &= ~drop[pieces]
    return True


def _not_below(labels: np.ndarray, n: int, largest: int) -> np.ndarray:
    """Components (0..n) not lying under the largest one's base (gas below the diaphragm)."""
    z = np.arange(labels.shape[0], dtype=float)
    per_slice = np.stack([np.bincount(labels[k].ravel(), minlength=n + 1) for k in range(len(z))])
    count = np.maximum(per_slice.sum(axis=0), 1)
    centre = (per_slice * z[:, None]).sum(axis=0) / count
    present = np.flatnonzero(per_slice[:, largest])
    floor = present[0] + GAS_BELOW_SHARE * (present[-1] - present[0])
    out = centre >= floor
    out[largest] = True
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
            on_right = np.bincount(blobs[:, : int(np.ceil(mid))].ravel(), minlength=m + 1)[1:]
            straddles = (
                on_right[big_r - 1] < 0.9 * sizes[big_r - 1]
                or on_right[big_l - 1] > 0.1 * sizes[big_l - 1]
            )
            if straddles:  # a lung's part still joined to the other lung: erode further
                continue
            markers[blobs == big_r] = RIGHT
            markers[blobs == big_l] = LEFT
            _, (iy, ix) = ndi.distance_transform_edt(markers == 0, return_indices=True)
            return np.where(piece, markers[iy, ix], 0).astype(np.uint8)
    return np.where(piece, np.where(columns < mid, RIGHT, LEFT), 0).astype(np.uint8)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius)))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= radius * radius


def _extent(mask: np.ndarray) -> tuple[int, float, float, np.ndarray, np.ndarray]:
    """Pixels of a 2-D mask, their mean row and column, and the rows and columns holding any.

    From row and column counts instead of ``np.nonzero``: integer sums are exact, so the means
    equal ``np.nonzero(mask)[i].mean()``.
    """
    row_n = np.count_nonzero(mask, axis=1)
    col_n = np.count_nonzero(mask, axis=0)
    n = int(row_n.sum())
    cy = (row_n * np.arange(row_n.size)).sum() / n
    cx = (col_n * np.arange(col_n.size)).sum() / n
    return n, cy, cx, np.flatnonzero(row_n), np.flatnonzero(col_n)


def _label_sums(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` over each label 1..n (as ``ndi.sum_labels``, for ``ndi.mean`` and
    ``ndi.center_of_mass`` without their per-call overhead; sums of integers are exact)."""
    return np.bincount(labels.ravel(), weights=values.ravel(), minlength=n + 1)[1:]


def _fill_lungs(lungs: np.ndarray, smooth: np.ndarray, spacing, mid: float) -> np.ndarray:
    """Per slice and lung: close, fill holes, fill chest-wall-side convex-hull bays.

    The two lungs are filled independently (possibly in two threads); where their fills overlap,
    the right lung, filled first, keeps the voxel.
    """
    right, left = map_threads(
        lambda value: _fill_one_lung(lungs, value, smooth, spacing, mid), (RIGHT, LEFT)
    )
    out = np.zeros_like(lungs)
    out[right] = RIGHT
    left &= out == 0
    out[left] = LEFT
    del right, left
    _fill_pleural(out, smooth, spacing)
    return out


def _fill_one_lung(lungs: np.ndarray, value: int, smooth: np.ndarray, spacing, mid: float):
    """The filled mask (bool) of one lung: per slice closed, holes and chest-wall bays filled."""
    filled = np.zeros(lungs.shape, dtype=bool)
    closing = _disk(4.0 / spacing[1])
    pixel_mm2 = spacing[1] * spacing[2]
    pad = closing.shape[0]
    # lung that holes may stand on: aerated lung and the large holes filled above it
    grounded = lungs == value
    for k in np.flatnonzero(grounded.any(axis=(1, 2))):
        sl = lungs[k] == value
        n_px, cy, cx, rows, cols = _extent(sl)
        y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, sl.shape[0])
        x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, sl.shape[1])
        box = sl[y0:y1, x0:x1]
        shape = ndi.binary_closing(box, structure=closing) | box
        holes, m = ndi.label(ndi.binary_fill_holes(shape) & ~shape)
        if m:
            # a large hole is lung (vessels, a lesion) when lung lies below it; one that
            # opens downwards is the diaphragm's dome inside the costophrenic recess
            count = np.bincount(holes.ravel(), minlength=m + 1)
            area = count[1:] * pixel_mm2
            if k > 0:  # the share of each hole with lung below it
                below = grounded[k - 1, y0:y1, x0:x1]
                share = _label_sums(holes, below, m) / count[1:]
            else:
                share = np.zeros(m)
            large = np.concatenate([[False], share >= 0.5])[holes]
            grounded[k, y0:y1, x0:x1] |= large
            shape |= large | np.concatenate([[False], area < DOME_MIN_MM2])[holes]
        dense = smooth[k, y0:y1, x0:x1] > AIR_HU
        centre = (round(cy) - y0, round(cx) - x0)
        if n_px > 20 and shape[centre]:  # not for crescents around the dome
            hull = _hull_image(shape)
            bays, m = ndi.label(hull & ~shape)
            if m:
                centre_x = cx - x0
                count = np.bincount(bays.ravel(), minlength=m + 1)[1:]
                columns = np.broadcast_to(np.arange(bays.shape[1]), bays.shape)
                bay_x = _label_sums(bays, columns, m) / count
                share = _label_sums(bays, dense, m) / count
                lateral = np.abs(bay_x + x0 - mid) >= np.abs(centre_x + x0 - mid) - 5
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
                # a bay over the diaphragm's dome (liver, spleen, heart under a crescent of
                # lung) has no lung below it; dense lung against the pleura has (in the first
                # slice, a single image among them, what lies below is not known)
                if k > 0:
                    under = _label_sums(bays, grounded[k - 1, y0:y1, x0:x1], m) / count
                else:
                    under = np.ones(m)
                add = np.concatenate(
                    [[False], lateral & (share > 0.6) & ~edge[1:] & (under >= 0.5)]
                )
                shape |= add[bays]
                grounded[k, y0:y1, x0:x1] |= add[bays]
        filled[k, y0:y1, x0:x1] |= shape
    return filled


def _drop_airless(filled: np.ndarray, smooth: np.ndarray) -> None:
    """Remove, slice by slice, the parts of each filled lung with (almost) no air in them
    (in place).

    The fills add dense tissue to aerated lung: holes it encloses, bays against the chest wall,
    and (in 3-D, :func:`_fill_pleural`) dense voxels under the lung's convex hull. Grown in 3-D,
    the last can reach down into the liver under a lung base's anterior recess, where a slice
    then holds a patch of soft tissue apart from the lung (issue 24: +50 HU "lesion" in the
    right lung on a dozen slices below the bases of a COVID-19 scan). In a slice, a part of a
    lung that does not touch the rest holds air — at least :data:`AIRLESS_SHARE` of it below
    ``AIR_HU`` or next to such a voxel — or it is not lung.
    """
    eight = np.ones((3, 3), dtype=bool)
    for k in np.flatnonzero(filled.any(axis=(1, 2))):
        for value in (RIGHT, LEFT):
            parts, n = ndi.label(filled[k] == value, structure=eight)
            if n == 0:
                continue
            size = np.bincount(parts.ravel(), minlength=n + 1)[1:]
            # air in the part or next to it (in-plane): cysts and bronchiectasis, whose air the
            # lung's mask may leave out, keep their walls
            near_air = ndi.binary_dilation(smooth[k] < AIR_HU, structure=eight)
            aired = np.bincount(parts[near_air], minlength=n + 1)[1:]
            airless = np.flatnonzero(aired < AIRLESS_SHARE * size) + 1
            if airless.size:
                filled[k][np.isin(parts, airless)] = 0


def _fill_pleural(out: np.ndarray, smooth: np.ndarray, spacing) -> None:
    """Dense lung against the chest wall that bulges past the chord of its slice's lung.

    The costal pleura is convex: each lung's 3-D convex hull (from the aerated, filled lung)
    follows the chest wall's inner surface above, below and beside a subpleural consolidation,
    even where the consolidation fills a slice's whole lateral edge. Hull voxels are added when
    dense but not bone, outside the slice's own 2-D hull (what the 2-D fill decides), on the
    lateral half of that slice's lung, and connected to the lung.
    """
    from scipy.spatial import ConvexHull, QhullError, cKDTree

    scale = np.asarray(spacing, dtype=float)
    for value in (RIGHT, LEFT):
        mask = out == value
        if np.count_nonzero(mask) < 50:
            continue
        region = compute_bounding_box(mask)
        box = mask[region]
        del mask
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
        aerated = np.argwhere(shell & (smooth[region] < AIR_HU))
        if aerated.shape[0] > 30000:
            aerated = aerated[:: aerated.shape[0] // 30000 + 1]
        tree = cKDTree(aerated * scale) if len(aerated) else None
        dense = (smooth[region] > AIR_HU) & (smooth[region] < 200.0)
        dense &= out[region] == 0
        sign = -1.0 if value == RIGHT else 1.0
        for k in range(box.shape[0]):
            if not box[k].any() or not dense[k].any():
                dense[k] = False
                continue
            n_px, cy, cx, rows, cols = _extent(box[k])
            if not box[k][round(cy), round(cx)]:
                # a crescent (costophrenic recess around the dome, a lung cut by the scan's
                # edge): what its hull spans is not lung
                dense[k] = False
                continue
            lateral = sign * (np.arange(box.shape[2]) - cx) >= 0
            dense[k] &= lateral[None, :]
            if n_px > 20:
                # the hull lies within the slice's lung extent: erode it there (border zeros)
                y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, box.shape[1])
                x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, box.shape[2])
                hull_k = _hull_image(box[k, y0:y1, x0:x1])
                dense[k, y0:y1, x0:x1] &= ~ndi.binary_erosion(hull_k, iterations=2)
        # grow from the lung through dense voxels inside the hull, testing only the front
        base = HULL_TOLERANCE * float(scale[1:].mean())
        cross = ndi.generate_binary_structure(3, 1)
        added = np.zeros(box.shape, dtype=bool)
        cand = np.argwhere(ndi.binary_dilation(box, structure=cross) & dense)
        while len(cand):
            dense[tuple(cand.T)] = False
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
            new = cand[inside]
            if not len(new):
                break
            added[tuple(new.T)] = True
            # the next front: neighbours of the new voxels, on their bounding box grown by one
            lo = np.maximum(new.min(axis=0) - 1, 0)
            hi = np.minimum(new.max(axis=0) + 2, box.shape)
            near_box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            grown = np.zeros(hi - lo, dtype=bool)
            grown[tuple((new - lo).T)] = True
            grown = ndi.binary_dilation(grown, structure=cross) & dense[near_box]
            cand = np.argwhere(grown) + lo
        target = out[region]
        target[added] = value


def _refine(filled: np.ndarray, air_lungs: np.ndarray, hu: np.ndarray, factor: int) -> np.ndarray:
    """Full-resolution labels: coarse interior kept, boundary voxels decided by their own HU.

    Each slice is worked on within its lungs' bounding box grown by one coarse pixel (the
    dilation's reach; outside it nothing is written); slabs of slices may run in threads.
    """
    full = np.zeros(hu.shape, dtype=np.uint8)
    cy, cx = filled.shape[1:]

    def refine_slice(k: int) -> None:
        rows = np.flatnonzero(filled[k].any(axis=1))
        if rows.size == 0:
            return
        cols = np.flatnonzero(filled[k].any(axis=0))
        y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, cy)
        x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, cx)
        coarse = filled[k, y0:y1, x0:x1]
        added = (coarse > 0) & (air_lungs[k, y0:y1, x0:x1] == 0)  # vessels, lesions, fills
        grown = ndi.grey_dilation(coarse, size=(3, 3))
        inner = ndi.binary_erosion(coarse > 0) & ~added
        up = _upsample(grown, factor)
        keep = _upsample(inner | added, factor)
        band = (up > 0) & ~keep
        out = full[k, y0 * factor : y1 * factor, x0 * factor : x1 * factor]
        out[keep] = _upsample(coarse, factor)[keep]
        band &= hu[k, y0 * factor : y1 * factor, x0 * factor : x1 * factor] < AIR_HU
        out[band] = up[band]

    def refine_slab(start: int) -> None:
        for k in range(start, min(start + SLAB, hu.shape[0])):
            refine_slice(k)

    map_threads(refine_slab, range(0, hu.shape[0], SLAB))
    return full


def _upsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel of a 2-D image repeated ``factor`` × ``factor`` times."""
    return np.repeat(np.repeat(image, factor, 0), factor, 1)


def _hull_image(mask: np.ndarray) -> np.ndarray:
    """Pixels inside or on the convex hull of a 2-D mask, each pixel a diamond of radius ½.

    The same pixels as ``skimage.morphology.convex_hull_image(mask)`` (offset coordinates,
    borders included), computed exactly in integers row by row: in doubled coordinates the hull's
    vertices are integers, so each row's span is a ceil/floor of a rational, instead of testing
    every pixel against the polygon.
    """
    from scipy.spatial import ConvexHull, QhullError

    out = np.zeros(mask.shape, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return out
    sub = mask[rows]
    left = np.argmax(sub, axis=1).astype(np.int64)
    right = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1).astype(np.int64)
    # doubled coordinates: pixel (r, c) is (2r, 2c), its diamond's corners are 1 away; the other
    # pixels of a row lie inside the hull of its first and last pixel's diamonds
    r2, lo, hi = 2 * rows.astype(np.int64), 2 * left, 2 * right
    corners = np.empty((6, rows.size, 2), dtype=np.int64)
    corners[:, :, 0] = r2 + np.array([0, 0, -1, 1, -1, 1])[:, None]
    corners[:, :, 1] = np.stack([lo - 1, hi + 1, lo, lo, hi, hi])
    corners = corners.reshape(-1, 2)
    try:
        hull = ConvexHull(corners.astype(float))
    except QhullError:  # duplicate corners have never upset it; in case they do
        corners = np.unique(corners, axis=0)
        hull = ConvexHull(corners.astype(float))
    a = corners[hull.vertices]
    b = np.roll(a, -1, axis=0)
    slanted = a[:, 0] != b[:, 0]  # horizontal edges end at vertices of slanted ones
    a, b = a[slanted], b[slanted]
    ra, ca, dr, dc = (
        a[:, 0][None, :],
        a[:, 1][None, :],
        (b - a)[:, 0][None, :],
        (b - a)[:, 1][None, :],
    )
    span = np.arange(rows[0], rows[-1] + 1, dtype=np.int64)
    row = 2 * span[:, None]
    crosses = (row - ra) * (row - ra - dr) <= 0  # the row meets this edge (ends included)
    # the crossing's column, halved: (ca·dr + (row − ra)·dc) / (2·dr), with a positive denominator
    num = ca * dr + (row - ra) * dc
    den = 2 * dr
    num, den = np.where(den < 0, -num, num), np.abs(den)
    first = np.where(crosses, -((-num) // den), np.iinfo(np.int64).max).min(axis=1)
    last = np.where(crosses, num // den, np.iinfo(np.int64).min).max(axis=1)
    first = np.clip(first, 0, mask.shape[1])
    last = np.clip(last, -1, mask.shape[1] - 1)
    cols = np.arange(mask.shape[1])
    out[span[0] : span[-1] + 1] = (cols >= first[:, None]) & (cols <= last[:, None])
    return out


#: Lesions (found by the lesion network) reaching within this distance (mm) of a lung are lung.
ADJACENT_LESION_MM = 3.0


def add_adjacent_lesions(
    lungs: np.ndarray,
    lesions: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    reach_mm: float = ADJACENT_LESION_MM,
) -> np.ndarray:
    """``lungs`` (labels) with each in-slice lesion region that reaches within ``reach_mm`` of a
    lung added to it, each added pixel given the side of its nearest lung pixel.

    For display images, whose density says little: dense consolidation against the pleura looks
    like the chest wall, so the lung found from air stops short of it, while the lesion network,
    which looks at shape and texture, finds it. Lesion regions away from both lungs stay out.
    """
    out = lungs.copy()
    reach = max(1, round(reach_mm / max(spacing[1], 1e-6)))
    for k in range(lungs.shape[0]):
        lung, found = lungs[k], lesions[k] > 0
        if not lung.any() or not (found & (lung == 0)).any():
            continue
        regions, _ = ndi.label(found)
        near = ndi.binary_dilation(lung > 0, iterations=reach)
        touching = np.unique(regions[near & found])
        added = np.isin(regions, touching[touching > 0]) & (lung == 0)
        if added.any():
            _, (rows, cols) = ndi.distance_transform_edt(lung == 0, return_indices=True)
            out[k][added] = lung[rows[added], cols[added]]
    return out


def compute_zone_bounds(present: np.ndarray) -> list[tuple[int, int]]:
    """Slice ranges ``[lo, hi)`` of the upper, middle and lower zone of one lung.

    ``present`` flags the slices holding that lung; the zones are thirds of its height (z grows
    superior, so the upper third comes first). Empty when the lung is absent.
    """
    found = np.flatnonzero(present)
    if found.size == 0:
        return []
    bottom, top = found.min(), found.max() + 1
    edges = np.linspace(top, bottom, 4)
    return [(round(edges[zone + 1]), round(edges[zone])) for zone in range(3)]


def compute_zones(lungs: np.ndarray) -> np.ndarray:
    """Zone of each lung voxel: 1 upper, 2 middle, 3 lower third of that lung's height."""
    zones = np.zeros(lungs.shape, dtype=np.uint8)
    for value in (RIGHT, LEFT):
        present = np.array([(lungs[k] == value).any() for k in range(lungs.shape[0])], dtype=bool)
        for zone, (lo, hi) in enumerate(compute_zone_bounds(present)):
            part = lungs[lo:hi] == value
            zones[lo:hi][part] = zone + 1
    return zones


__all__ = [
    "ADJACENT_LESION_MM",
    "LEFT",
    "RIGHT",
    "ZONES",
    "LungMasks",
    "add_adjacent_lesions",
    "compute_bounding_box",
    "compute_zone_bounds",
    "compute_zones",
    "segment_lungs",
]
