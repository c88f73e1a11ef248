"""One scan through the whole pipeline: read, lungs, lesions, quantification, masks on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from celltrial.imaging.io import CtVolume, read_ct, write_mask
from celltrial.imaging.lesions import compute_learned_lesions, segment_lesions
from celltrial.imaging.lungs import add_adjacent_lesions, segment_lungs
from celltrial.imaging.quantify import CtQuantification, summarize_ct


@dataclass(frozen=True)
class ScanResult:
    """A scan, its lung and lesion labels (internal orientation) and its quantification."""

    volume: CtVolume
    lungs: np.ndarray
    lesions: np.ndarray
    quantification: CtQuantification


def measure_scan(
    source: CtVolume | Path | str,
    *,
    method: str = "auto",
    window: tuple[float, float] | None = None,
) -> ScanResult:
    """Read (unless given a volume), segment lungs and lesions, and quantify one scan."""
    if isinstance(source, CtVolume):
        volume = source
    elif window is not None:
        volume = read_ct(source, window=window)
    else:
        volume = read_ct(source)
    lungs = segment_lungs(volume)
    labels, notes = lungs.labels, list(lungs.notes)
    used = method if method != "auto" else ("learned" if volume.approximate else "density")
    if used == "learned" and volume.approximate:
        # on display images the network's lesions against a lung are lung (dense consolidation
        # looks like chest wall there), then the lesions are kept inside the lungs
        found = compute_learned_lesions(volume.hu, labels, volume.spacing, keep_outside=True)
        labels = add_adjacent_lesions(labels, found, volume.spacing)
        lesions = np.where(labels > 0, found, 0).astype(np.uint8)
        added_ml = np.count_nonzero(labels != lungs.labels) * np.prod(volume.spacing) / 1000.0
        if added_ml > 0:
            amount = f"{added_ml:.1f} mL" if added_ml >= 0.1 else "less than 0.1 mL"
            notes.append(
                f"display image: {amount} of lesion against the lungs' border counted as lung"
            )
    else:
        lesions = segment_lesions(volume, labels, method=used)
    caveats = list(volume.notes) + notes
    quantification = summarize_ct(
        volume.hu, labels, lesions, spacing=volume.spacing, method=used, caveats=caveats
    )
    return ScanResult(volume, labels, lesions, quantification)


def input_stem(path: Path | str) -> str:
    """The input's name without its extensions (``scan.nii.gz`` → ``scan``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".png", ".jpg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if "." in name else name


def write_scan_result(result: ScanResult, folder: Path | str) -> Path:
    """Write ``lungs.nii.gz``, ``lesions.nii.gz`` (input geometry) and ``result.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_mask(result.volume, result.lungs, folder / "lungs.nii.gz")
    write_mask(result.volume, result.lesions, folder / "lesions.nii.gz")
    payload = {
        "source": result.volume.source,
        "checksum": result.volume.checksum,
        "series_uid": result.volume.series_uid,
        "approximate_hu": result.volume.approximate,
        "spacing_mm": list(result.volume.spacing),
        **result.quantification.to_dict(),
    }
    (folder / "result.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return folder


__all__ = ["ScanResult", "input_stem", "measure_scan", "write_scan_result"]
