"""One scan through the whole pipeline: read, lungs, lesions, quantification, masks on disk."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from celltrial import __version__
from celltrial.imaging.dicom_seg import SEG_FILE, write_dicom_seg
from celltrial.imaging.io import DISPLAY_SUFFIXES, CtVolume, ImagingError, read_ct, write_mask
from celltrial.imaging.lesions import compute_learned_lesions, segment_lesions
from celltrial.imaging.lungs import add_adjacent_lesions, segment_lungs
from celltrial.imaging.network import read_network_identity
from celltrial.imaging.quantify import CtQuantification, load_bands, summarize_ct
from celltrial.imaging.scorable import assess_coverage


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
    """Read (unless given a volume), segment lungs and lesions, and quantify one scan.

    Raises :class:`~celltrial.imaging.scorable.NotScorable` (an :class:`ImagingError`) with the
    reason when the scan cannot be scored (see :mod:`celltrial.imaging.scorable`).
    """
    if isinstance(source, CtVolume):
        volume = source
    elif window is not None:
        volume = read_ct(source, window=window)
    else:
        volume = read_ct(source)
    lungs = segment_lungs(volume)
    labels, notes = lungs.labels, list(lungs.notes)
    coverage = assess_coverage(
        labels,
        volume.spacing,
        source=volume.source,
        cut_share=lungs.cut_share,
    )
    notes += coverage.notes
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
        volume.hu,
        labels,
        lesions,
        spacing=volume.spacing,
        method=used,
        caveats=caveats,
        uncovered=coverage.uncovered,
    )
    return ScanResult(volume, labels, lesions, quantification)


def input_stem(path: Path | str) -> str:
    """The input's name without its extensions (``scan.nii.gz`` → ``scan``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".png", ".jpg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if "." in name else name


def output_names(paths: list[Path] | list[str]) -> list[str]:
    """One distinct output folder name per input: its stem, prefixed with as few of its parent
    folders' names as tell inputs of the same name apart (``a/image.nii.gz`` and
    ``b/image.nii.gz`` → ``a-image``, ``b-image``), numbered when none do (the same input
    twice)."""
    paths = [Path(p).absolute() for p in paths]
    names = [input_stem(p) for p in paths]
    out = list(names)
    for stem in set(names):
        group = [i for i, name in enumerate(names) if name == stem]
        if len(group) == 1:
            continue
        depth = max(len(paths[i].parents) for i in group)
        for d in range(1, depth):
            tried = [
                "-".join([p.name for p in reversed(paths[i].parents[:d])] + [stem]) for i in group
            ]
            if len(set(tried)) == len(tried):
                break
        else:
            tried = [stem if n == 0 else f"{stem}-{n + 1}" for n in range(len(group))]
        for i, name in zip(group, tried, strict=True):
            out[i] = name
    return out


def claim_folder(parent: Path | str, name: str, source: str) -> tuple[Path, bool]:
    """The output folder for ``source``: ``parent/name``, or when that holds the result of
    another input, ``name-2``, ``name-3``… (a result is never overwritten silently). The flag
    says the folder held an earlier result of this same input, which is replaced."""
    parent = Path(parent)
    for n in range(1, 1000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        result = folder / "result.json"
        if not folder.exists() or not any(folder.iterdir()):
            return folder, False
        if result.is_file():
            try:
                earlier = json.loads(result.read_text(encoding="utf-8")).get("source")
            except (ValueError, OSError, AttributeError):
                earlier = None
            if earlier == source:
                return folder, True
    raise ImagingError(f"{parent}: more than 999 result folders named {name}")


def write_scan_result(result: ScanResult, folder: Path | str) -> dict[str, Any]:
    """Write ``lungs.nii.gz``, ``lesions.nii.gz`` (input geometry), for a DICOM series also
    ``segmentation.dcm`` (a DICOM SEG of the source series), and ``result.json``; return what
    ``result.json`` holds.

    A DICOM series whose images lack what a SEG must refer to gets no SEG; the reason is among
    the caveats.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume, q = result.volume, result.quantification
    write_mask(volume, result.lungs, folder / "lungs.nii.gz")
    write_mask(volume, result.lesions, folder / "lesions.nii.gz")
    model = read_network_identity() if q.method == "learned" else None
    seg_notes: list[str] = []
    seg: str | None = None
    (folder / SEG_FILE).unlink(missing_ok=True)  # an earlier result of this input
    if volume.meta.get("instances"):
        try:
            write_dicom_seg(
                volume,
                result.lungs,
                result.lesions,
                folder / SEG_FILE,
                lesion_method=q.method,
                model=model,
            )
            seg = SEG_FILE
        except ImagingError as exc:
            seg_notes.append(str(exc).removeprefix(f"{volume.source}: "))
    quantification = q.to_dict()
    quantification["caveats"] += seg_notes
    payload = {
        "source": volume.source,
        "scorable": True,
        "celltrial_version": __version__,
        "input": {
            "path": volume.source,
            "kind": _input_kind(volume),
            "series_uid": volume.series_uid,
            "sha256": volume.checksum,
        },
        "approximate_hu": volume.approximate,
        "spacing_mm": list(volume.spacing),
        "methods": describe_methods(q.method),
        "model": model,
        "outputs": {"lungs": "lungs.nii.gz", "lesions": "lesions.nii.gz", "dicom_seg": seg},
        **quantification,
    }
    if volume.meta.get("spacing_unknown"):
        payload = _in_voxels(payload, 1000.0 / float(np.prod(volume.spacing)))
        payload["spacing_mm"] = None
    (folder / "result.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return payload


@cache
def load_methods() -> dict[str, Any]:
    """The shipped descriptions and limits of the segmentation methods (``methods.yaml``)."""
    text = (resources.files("celltrial.imaging") / "methods.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def describe_methods(lesion_method: str) -> dict[str, Any]:
    """How the lungs and the lesions were found, with the limits a reader must know."""
    methods = copy.deepcopy(load_methods())
    lesions = methods["lesions"][lesion_method]
    described: dict[str, Any] = {
        "lungs": {"method": "density", **methods["lungs"]["density"]},
        "lesions": {"method": lesion_method, **lesions},
        "limits": list(methods["limits"]),
    }
    if lesion_method == "density":
        bands = load_bands()["bands"]
        described["lesions"]["bands_hu"] = {
            name: list(bands[name]) for name in ("ground_glass", "consolidation")
        }
    return described


def _input_kind(volume: CtVolume) -> str:
    """``DICOM series``, ``display image`` (an 8-bit PNG/JPEG…) or ``volume file``."""
    if volume.meta.get("instances"):
        return "DICOM series"
    if volume.source.lower().endswith(DISPLAY_SUFFIXES):
        return "display image"
    return "volume file"


def _in_voxels(payload: dict, per_ml: float) -> dict:
    """``payload`` with each ``…_ml`` value replaced by ``None`` and given as ``…_voxels``
    (the pixel size is unknown: the counts are real, millilitres would be invented)."""
    out: dict = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            out[key] = _in_voxels(value, per_ml)
        elif key.endswith("_ml") and isinstance(value, int | float):
            out[key] = None
            out[key[: -len("_ml")] + "_voxels"] = round(value * per_ml)
        else:
            out[key] = value
    return out


def write_refusal(source: str, reason: str, folder: Path | str) -> Path:
    """Write ``result.json`` saying why ``source`` was not scored (no masks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("lungs.nii.gz", "lesions.nii.gz", "overlay.png", SEG_FILE):
        (folder / stale).unlink(missing_ok=True)  # an earlier result of this input
    payload = {"source": source, "scorable": False, "reason": reason}
    (folder / "result.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return folder


__all__ = [
    "ScanResult",
    "claim_folder",
    "describe_methods",
    "input_stem",
    "load_methods",
    "measure_scan",
    "output_names",
    "write_refusal",
    "write_scan_result",
]
