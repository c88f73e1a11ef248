"""Axial and coronal overlays as PNG: lungs outlined, ground-glass and consolidation coloured.

Colours from the Okabe–Ito colour-blind-safe palette: ground-glass orange, consolidation blue,
lung outline yellow. Images are shown as a radiologist reads them (patient's right on the left).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class OverlayViews:
    """What an overlay shows of one scan: painted slices (name, RGB image, aspect) and a label."""

    views: tuple[tuple[str, np.ndarray, float], ...]
    label: str  # "lesions 655 mL (14.8 %), score 12/30"


def compute_views(result: ScanResult) -> OverlayViews:
    """The overlay views of a measured scan (axial and coronal slices with most lesion)."""
    q = result.quantification
    label = f"lesions {q.lesion_ml:.0f} mL ({q.involvement_pct:.1f} %), score {q.score}/30"
    return OverlayViews(tuple(_views(result)), label)


def save_views(views: OverlayViews, path: Path | str) -> Path:
    """Keep a scan's overlay views (a few small images) so reports need not segment it again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"image_{i}": np.asarray(image * 255, dtype=np.uint8)
        for i, (_name, image, _aspect) in enumerate(views.views)
    }
    np.savez_compressed(
        path,
        names=np.array([name for name, _image, _aspect in views.views]),
        aspects=np.array([aspect for _name, _image, aspect in views.views], dtype=float),
        label=np.array(views.label),
        **arrays,
    )
    return path


def load_views(path: Path | str) -> OverlayViews:
    """Overlay views saved by :func:`save_views`."""
    with np.load(path, allow_pickle=False) as data:
        views = tuple(
            (str(name), data[f"image_{i}"].astype(np.float32) / 255, float(aspect))
            for i, (name, aspect) in enumerate(zip(data["names"], data["aspects"], strict=True))
        )
        return OverlayViews(views, str(data["label"]))


def render_overlays(
    results: list[ScanResult],
    path: Path | str,
    *,
    titles: list[str] | None = None,
    dpi: int = 110,
) -> Path:
    """One PNG with a column per scan (e.g. baseline beside follow-up), axial above coronal."""
    titles = titles or [Path(r.volume.source).name for r in results]
    return render_view_grid([compute_views(r) for r in results], path, titles=titles, dpi=dpi)


#: Overlay grid geometry in inches: one cell per view, its title band, the legend band below.
CELL_IN, TITLE_IN, CELL_PAD_IN, LEGEND_IN = 4.2, 0.42, 0.06, 0.35


def render_view_grid(
    scans: list[OverlayViews], path: Path | str, *, titles: list[str], dpi: int = 110
) -> Path:
    """The overlay PNG from views already computed (one column per scan)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n_rows = max(len(s.views) for s in scans)
    # a fixed grid in inches (cells of CELL_IN with a title band, a legend band at the foot):
    # images need no layout engine, and measuring tick labels that are never drawn is the slow
    # part of matplotlib's automatic layouts
    width, height = CELL_IN * len(scans), CELL_IN * n_rows + LEGEND_IN
    fig = plt.figure(figsize=(width, height))
    for col, (scan, title) in enumerate(zip(scans, titles, strict=True)):
        for row in range(n_rows):
            left = (col * CELL_IN + CELL_PAD_IN) / width
            bottom = (LEGEND_IN + (n_rows - 1 - row) * CELL_IN + CELL_PAD_IN) / height
            ax = fig.add_axes(
                (
                    left,
                    bottom,
                    (CELL_IN - 2 * CELL_PAD_IN) / width,
                    (CELL_IN - TITLE_IN - CELL_PAD_IN) / height,
                )
            )
            ax.axis("off")
            ax.set_anchor("N")  # the image sits right under its title
            if row < len(scan.views):
                name, image, aspect = scan.views[row]
                ax.imshow(image, aspect=aspect, interpolation="nearest")
                # figure text, not an axes title: placing a title measures the hidden axes
                fig.text(
                    (col + 0.5) * CELL_IN / width,
                    (LEGEND_IN + (n_rows - row) * CELL_IN - CELL_PAD_IN) / height,
                    f"{title} — {name}\n{scan.label}",
                    fontsize=8,
                    ha="center",
                    va="top",
                )
                ax.text(2, 10, "R", color="white", fontsize=9, va="top")
    handles = [
        Patch(color=COLOURS["ground_glass"], label="ground-glass"),
        Patch(color=COLOURS["consolidation"], label="consolidation"),
        Patch(color=COLOURS["outline"], label="lung outline"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = [
    "COLOURS",
    "OverlayViews",
    "compute_overlay",
    "compute_views",
    "load_views",
    "render_overlays",
    "render_view_grid",
    "save_views",
]
