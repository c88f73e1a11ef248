"""Per-pixel features of an axial CT slice for the learned lesion model.

Features are computed on approximate Hounsfield units, slice by slice, at scales given in
millimetres (turned into pixels with the slice's pixel spacing), so that the same model applies to
display images mapped back from a lung window and to true HU volumes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Scales (mm) of the smoothed-intensity features.
SMOOTH_MM = (0.7, 1.5, 3.0, 6.0, 12.0, 24.0)
#: Scales (mm) of the edge, blob and tube features.
SHAPE_MM = (1.0, 2.0, 4.0)
#: Scales (mm) of the "how much air around" features.
CONTEXT_MM = (8.0, 20.0, 40.0)
#: Below this (HU) a pixel counts as aerated lung for the context features.
AIR_HU = -750.0


def feature_names() -> list[str]:
    """Names of the columns returned by :func:`compute_pixel_features`, in order."""
    names = [f"smooth_{s}" for s in SMOOTH_MM]
    for s in SHAPE_MM:
        names += [f"gradient_{s}", f"hessian_hi_{s}", f"hessian_lo_{s}", f"std_{s}"]
    names += [f"air_{s}" for s in CONTEXT_MM]
    names += ["rank_in_slice", "minus_air_median", "lung_depth"]
    return names


def compute_pixel_features(hu: np.ndarray, *, pixel_mm: float = 0.7) -> np.ndarray:
    """Features of one 2-D slice (approximate HU) → float32 array (rows, cols, n_features).

    ``pixel_mm`` is the in-plane pixel size; unknown sizes can be estimated with
    :func:`estimate_pixel_mm`.
    """
    image = np.asarray(hu, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"a 2-D slice is expected, got shape {image.shape}")
    out: list[np.ndarray] = []
    for s in SMOOTH_MM:
        out.append(ndi.gaussian_filter(image, s / pixel_mm))
    for s in SHAPE_MM:
        sigma = s / pixel_mm
        out.append(ndi.gaussian_gradient_magnitude(image, sigma) * sigma)
        hi, lo = _hessian_eigenvalues(image, sigma)
        out += [hi * sigma**2, lo * sigma**2]
        mean = ndi.gaussian_filter(image, sigma)
        square = ndi.gaussian_filter(image * image, sigma)
        out.append(np.sqrt(np.maximum(square - mean * mean, 0.0)))
    air = (ndi.gaussian_filter(image, 1.0 / pixel_mm) < AIR_HU).astype(np.float32)
    for s in CONTEXT_MM:
        out.append(ndi.gaussian_filter(air, s / pixel_mm))
    ranks = np.argsort(np.argsort(image.ravel(), kind="stable"), kind="stable")
    out.append((ranks / max(image.size - 1, 1)).reshape(image.shape).astype(np.float32))
    dark = image[air > 0]
    centre = float(np.median(dark)) if dark.size else -850.0
    out.append(image - centre)
    out.append(_lung_depth(air, pixel_mm))
    return np.stack(out, axis=-1).astype(np.float32, copy=False)


def estimate_pixel_mm(shape: tuple[int, ...], *, thorax_mm: float = 320.0) -> float:
    """A pixel size for a slice cropped to the thorax, whose longer side spans ``thorax_mm``."""
    return thorax_mm / float(max(shape[:2]))


def _hessian_eigenvalues(image: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    hxx = ndi.gaussian_filter(image, sigma, order=(0, 2))
    hyy = ndi.gaussian_filter(image, sigma, order=(2, 0))
    hxy = ndi.gaussian_filter(image, sigma, order=(1, 1))
    half_trace = (hxx + hyy) / 2
    root = np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    return half_trace + root, half_trace - root


def _lung_depth(air: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Distance (mm, capped at 40) inside the closed aerated region: a crude lung-depth map."""
    radius = max(1, round(6.0 / pixel_mm))
    region = ndi.binary_closing(air > 0, structure=_disk(radius), border_value=0)
    region = ndi.binary_fill_holes(region)
    depth = ndi.distance_transform_edt(region) * pixel_mm
    return np.minimum(depth, 40.0).astype(np.float32)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


__all__ = ["compute_pixel_features", "estimate_pixel_mm", "feature_names"]
