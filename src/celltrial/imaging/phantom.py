"""A synthetic chest CT with known lung and lesion volumes: the 3-D truth for the pipeline.

Anatomy is drawn in millimetres (x towards the patient's left, y posterior, z superior, origin at
the centre of the chest): body wall (fat, muscle), ribs, spine, aorta, heart, trachea and main
bronchi, two lungs at about −850 HU with vessels, and lesions — ground-glass (about −500 HU) and
consolidation (about +30 HU), subpleural ones clipped by the pleura. Each slice of thickness ``dz``
averages ``dz`` (mm) of thin sub-slices, so thick slices carry real partial-volume effects; the
truth volumes are counted on the sub-slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.io import CtVolume

HU = {
    "air": -1000,
    "fat": -100,
    "soft": 40,
    "bone": 700,
    "spine": 350,
    "lung": -850,
    "vessel": 40,
    "ground_glass": -500,
    "consolidation": 30,
}
LESION_KINDS = ("ground_glass", "consolidation")
#: Lungs: centre (x, y, z) and semi-axes (mm), right lung first.
LUNGS = (((-75.0, 5.0, 0.0), (58.0, 82.0, 120.0)), ((75.0, 5.0, 0.0), (55.0, 82.0, 115.0)))
HEART = ((15.0, -25.0, -45.0), (55.0, 50.0, 55.0))
CARINA = (0.0, -10.0, 60.0)


@dataclass(frozen=True)
class Lesion:
    """An ellipsoidal lesion (mm), clipped to the lungs."""

    kind: str  # "ground_glass" | "consolidation"
    centre: tuple[float, float, float]  # x, y, z
    radii: tuple[float, float, float]
    label: str = ""

    def scaled(self, factor: float) -> Lesion:
        """The same lesion with its radii multiplied by ``factor`` (shrunk < 1 < grown)."""
        return replace(self, radii=tuple(r * factor for r in self.radii))  # type: ignore[arg-type]


#: Default lesions: right lower-lobe subpleural consolidation, left posterior subpleural
#: consolidation, ground-glass patches (one subpleural, one central) in both lungs.
DEFAULT_LESIONS = (
    Lesion("consolidation", (-110.0, 70.0, -55.0), (28.0, 22.0, 30.0), "right posterior basal"),
    Lesion("consolidation", (105.0, 60.0, 20.0), (22.0, 25.0, 24.0), "left posterior"),
    Lesion("ground_glass", (-70.0, -40.0, 40.0), (26.0, 24.0, 28.0), "right anterior"),
    Lesion("ground_glass", (118.0, -10.0, -40.0), (22.0, 28.0, 30.0), "left lateral subpleural"),
    Lesion("ground_glass", (80.0, 20.0, 70.0), (18.0, 18.0, 20.0), "left upper"),
)


@dataclass(frozen=True)
class Phantom:
    """A phantom CT, its truth masks (internal orientation) and truth volumes (mL)."""

    volume: CtVolume
    lungs: np.ndarray  # 0 none, 1 right, 2 left (majority of sub-slices)
    lesions: np.ndarray  # 0 none, 1 ground-glass, 2 consolidation (majority)
    truth: dict[str, float] = field(default_factory=dict)
    lesion_list: tuple[Lesion, ...] = ()


def make_chest_phantom(
    *,
    shape: tuple[int, int] = (192, 192),
    pixel_mm: float = 2.0,
    slice_mm: float = 3.0,
    noise_hu: float = 15.0,
    lesions: tuple[Lesion, ...] = DEFAULT_LESIONS,
    z_range: tuple[float, float] = (-135.0, 135.0),
    seed: int = 0,
    sub_slices: int | None = None,
) -> Phantom:
    """A chest CT phantom: ``shape`` pixels of ``pixel_mm`` per slice, slices ``slice_mm`` thick.

    ``noise_hu`` is the standard deviation of the (slightly correlated) noise. Truth volumes in
    ``Phantom.truth`` (mL): ``lung_right``, ``lung_left``, ``lung``, ``ground_glass``,
    ``consolidation`` and the per-lung ones (``ground_glass_right`` …). ``sub_slices``: thin
    slices averaged per slice (default one per mm; fewer is faster, with less partial volume).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    n_sub = max(1, sub_slices if sub_slices is not None else round(slice_mm))
    sub_mm = slice_mm / n_sub
    nz = int(np.floor((z_range[1] - z_range[0]) / slice_mm))
    xs = (np.arange(nx) - (nx - 1) / 2) * pixel_mm
    ys = (np.arange(ny) - (ny - 1) / 2) * pixel_mm
    y2, x2 = np.meshgrid(ys, xs, indexing="ij")
    vessels = _vessel_tree(rng)
    hu = np.empty((nz, ny, nx), dtype=np.int16)
    lungs = np.zeros((nz, ny, nx), dtype=np.uint8)
    marks = np.zeros((nz, ny, nx), dtype=np.uint8)
    counts = dict.fromkeys(
        [f"{what}_{side}" for what in ("lung", *LESION_KINDS) for side in ("right", "left")],
        0,
    )
    sub_ml = pixel_mm * pixel_mm * sub_mm / 1000.0
    for k in range(nz):
        acc = np.zeros((ny, nx), dtype=np.float32)
        lung_votes = np.zeros((3, ny, nx), dtype=np.int16)
        lesion_votes = np.zeros((3, ny, nx), dtype=np.int16)
        for s in range(n_sub):
            z = z_range[0] + (k * n_sub + s + 0.5) * sub_mm
            image, lung_label, lesion_label = _draw_slice(x2, y2, z, vessels, lesions)
            acc += image
            for v in (1, 2):
                lung_votes[v] += lung_label == v
                lesion_votes[v] += lesion_label == v
            for v, side in ((1, "right"), (2, "left")):
                in_lung = lung_label == v
                counts[f"lung_{side}"] += int(in_lung.sum())
                counts[f"ground_glass_{side}"] += int((in_lung & (lesion_label == 1)).sum())
                counts[f"consolidation_{side}"] += int((in_lung & (lesion_label == 2)).sum())
        image = acc / n_sub
        image = ndi.gaussian_filter(image, 0.5)
        noise = ndi.gaussian_filter(rng.normal(0.0, 1.0, (ny, nx)).astype(np.float32), 0.6)
        image += noise * (noise_hu / 0.47)  # σ of the filtered unit noise is about 0.47
        hu[k] = np.clip(np.rint(image), -1024, 3000).astype(np.int16)
        lung_votes[0] = n_sub - lung_votes[1] - lung_votes[2]
        lungs[k] = np.argmax(lung_votes, axis=0)
        lesion_votes[0] = n_sub - lesion_votes[1] - lesion_votes[2]
        marks[k] = np.argmax(lesion_votes, axis=0)
    truth = {key: value * sub_ml for key, value in counts.items()}
    truth["lung"] = truth["lung_right"] + truth["lung_left"]
    for kind in LESION_KINDS:
        truth[kind] = truth[f"{kind}_right"] + truth[f"{kind}_left"]
    affine = np.diag([-pixel_mm, -pixel_mm, slice_mm, 1.0])  # x-y-z array: x → L, y → P
    affine[:3, 3] = [-xs[0], -ys[0], z_range[0] + slice_mm / 2]
    volume = CtVolume(
        hu=hu,
        spacing=(slice_mm, pixel_mm, pixel_mm),
        source=f"phantom(seed={seed}, slice={slice_mm} mm, noise={noise_hu} HU)",
        native_affine=affine,
        native_shape=(nx, ny, nz),
        ornt=np.array([[0, 1], [1, 1], [2, 1]], dtype=float),
        notes=("synthetic phantom",),
    )
    return Phantom(volume, lungs, marks, truth, tuple(lesions))


def make_follow_up(phantom_lesions: tuple[Lesion, ...], factor: float) -> tuple[Lesion, ...]:
    """Lesions of a follow-up scan: every lesion's radii times ``factor``."""
    return tuple(lesion.scaled(factor) for lesion in phantom_lesions)


def _inside(x, y, z, centre, radii) -> np.ndarray:
    return (
        ((x - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((z - centre[2]) / radii[2]) ** 2
    ) <= 1.0


def _vessel_tree(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Straight vessel segments (start, end, radius mm) fanning out from each hilum."""
    out = []
    for side in (-1.0, 1.0):
        hilum = np.array([side * 22.0, 0.0, 10.0])
        for _ in range(14):
            direction = rng.normal(size=3) * np.array([0.6, 1.0, 1.6])
            direction[0] = side * abs(direction[0]) + side * 0.5
            direction /= np.linalg.norm(direction)
            length = rng.uniform(50.0, 100.0)
            radius = rng.uniform(1.5, 3.5)
            # branches leave the hilum region at different heights (no convergence blob)
            offset = np.array([0.0, rng.uniform(-20.0, 20.0), rng.uniform(-35.0, 35.0)])
            start = hilum + offset + direction * 14.0
            out.append((start, start + direction * length, radius))
    return out


def _draw_slice(x, y, z, vessels, lesions):
    """HU image (float32), lung labels and lesion labels of the thin slice at height ``z``."""
    image = np.full(x.shape, HU["air"], dtype=np.float32)
    taper = 1.0 - 0.25 * np.clip((z - 40.0) / 100.0, 0.0, 1.0)  # narrower chest towards the apex
    body = (x / (160.0 * taper)) ** 2 + (y / 115.0) ** 2 <= 1.0
    muscle = (x / (150.0 * taper)) ** 2 + (y / 105.0) ** 2 <= 1.0
    image[body] = HU["fat"]
    image[muscle] = HU["soft"]
    rib_ring = ((x / (144.0 * taper)) ** 2 + (y / 98.0) ** 2 - 1.0) ** 2 < 0.0012
    if (z % 25.0) < 9.0:
        image[rib_ring & muscle] = HU["bone"]
    image[(x**2 + (y - 85.0) ** 2) <= 18.0**2] = HU["spine"]
    lung_label = np.zeros(x.shape, dtype=np.uint8)
    heart = _inside(x, y, z, *HEART)
    for value, (centre, radii) in enumerate(LUNGS, start=1):
        inside = _inside(x, y, z, centre, radii) & ~heart
        lung_label[inside] = value
    lung = lung_label > 0
    image[lung] = HU["lung"]
    for start, end, radius in vessels:
        if not min(start[2], end[2]) - radius <= z <= max(start[2], end[2]) + radius:
            continue
        near = _segment_distance(x, y, z, start, end) <= radius
        image[near & lung] = HU["vessel"]
    lesion_label = np.zeros(x.shape, dtype=np.uint8)
    for lesion in lesions:
        inside = _inside(x, y, z, lesion.centre, lesion.radii) & lung
        value = 1 if lesion.kind == "ground_glass" else 2
        lesion_label[inside] = np.maximum(lesion_label[inside], value)
    image[lesion_label == 1] = HU["ground_glass"]
    image[lesion_label == 2] = HU["consolidation"]
    image[heart] = HU["soft"]
    image[(((x - 22.0) ** 2 + (y - 55.0) ** 2) <= 13.0**2) & ~lung] = HU["soft"]
    # airways: trachea above the carina, main bronchi from the carina to each hilum
    cx, cy, cz = CARINA
    if z >= cz:
        wall = (x - cx) ** 2 + (y - cy) ** 2 <= 11.0**2
        image[wall] = HU["soft"]
        image[(x - cx) ** 2 + (y - cy) ** 2 <= 8.5**2] = HU["air"]
    for side in (-1.0, 1.0):
        start, end = np.array(CARINA), np.array([side * 36.0, -5.0, 25.0])
        if not 15.0 <= z <= CARINA[2] + 10.0:
            continue
        distance = _segment_distance(x, y, z, start, end)
        outside = ~lung
        image[(distance <= 7.5) & outside] = HU["soft"]
        image[(distance <= 5.5) & outside] = HU["air"]
    return image, lung_label, lesion_label


def _segment_distance(x, y, z, start, end) -> np.ndarray:
    d = end - start
    t = ((x - start[0]) * d[0] + (y - start[1]) * d[1] + (z - start[2]) * d[2]) / (d @ d)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt(
        (x - start[0] - t * d[0]) ** 2
        + (y - start[1] - t * d[1]) ** 2
        + (z - start[2] - t * d[2]) ** 2
    )


__all__ = ["DEFAULT_LESIONS", "HU", "Lesion", "Phantom", "make_chest_phantom", "make_follow_up"]
