"""Axial and coronal overlays as PNG: lungs outlined, ground-glass and consolidation coloured.

Colours from the Okabe–Ito colour-blind-safe palette: ground-glass orange, consolidation blue,
lung outline yellow. Images are shown as a radiologist reads them (patient's right on the left).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from celltrial.imaging.scan import ScanResult

COLOURS = {"ground_glass": "#E69F00", "consolidation": "#0072B2", "outline": "#F0E442"}
LUNG_WINDOW = (1500.0, -600.0)


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def compute_overlay(hu: np.ndarray, lungs: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """An RGB image (float 0–1) of one 2-D slice with the masks painted over it."""
    width, level = LUNG_WINDOW
    grey = np.clip((hu.astype(np.float32) - (level - width / 2)) / width, 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for value, name in ((1, "ground_glass"), (2, "consolidation")):
        mask = lesions == value
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * _rgb(COLOURS[name])
    outline = np.zeros(lungs.shape, dtype=bool)
    for value in (1, 2):
        mask = lungs == value
        outline |= mask & ~ndi.binary_erosion(mask)
    rgb[outline] = _rgb(COLOURS["outline"])
    return rgb


def _views(result: ScanResult) -> list[tuple[str, np.ndarray, float]]:
    hu, lungs, lesions = result.volume.hu, result.lungs, result.lesions
    per_slice = (lesions > 0).sum(axis=(1, 2)) + (lungs > 0).sum(axis=(1, 2)) * 1e-3
    k = int(np.argmax(per_slice))
    views = [("axial", compute_overlay(hu[k], lungs[k], lesions[k]), 1.0)]
    if hu.shape[0] > 1:
        per_row = (lesions > 0).sum(axis=(0, 2)) + (lungs > 0).sum(axis=(0, 2)) * 1e-3
        j = int(np.argmax(per_row))
        coronal = compute_overlay(hu[::-1, j], lungs[::-1, j], lesions[::-1, j])
        aspect = result.volume.spacing[0] / result.volume.spacing[2]
        views.append(("coronal", coronal, aspect))
    return views


def render_overlays(
    results: list[ScanResult],
    path: Path | str,
    *,
    titles: list[str] | None = None,
    dpi: int = 110,
) -> Path:
    """One PNG with a column per scan (e.g. baseline beside follow-up), axial above coronal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    views = [_views(r) for r in results]
    n_rows = max(len(v) for v in views)
    fig, axes = plt.subplots(
        n_rows, len(results), figsize=(4.2 * len(results), 4.2 * n_rows), squeeze=False
    )
    for col, (result, scan_views) in enumerate(zip(results, views, strict=True)):
        for row in range(n_rows):
            ax = axes[row][col]
            ax.axis("off")
            if row < len(scan_views):
                name, image, aspect = scan_views[row]
                ax.imshow(image, aspect=aspect, interpolation="nearest")
                q = result.quantification
                title = titles[col] if titles else Path(result.volume.source).name
                ax.set_title(
                    f"{title} — {name}\nlesions {q.lesion_ml:.0f} mL ({q.involvement_pct:.1f} %), "
                    f"score {q.score}/30",
                    fontsize=8,
                )
                ax.text(2, 10, "R", color="white", fontsize=9, va="top")
    handles = [
        Patch(color=COLOURS["ground_glass"], label="ground-glass"),
        Patch(color=COLOURS["consolidation"], label="consolidation"),
        Patch(color=COLOURS["outline"], label="lung outline"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = ["COLOURS", "compute_overlay", "render_overlays"]
