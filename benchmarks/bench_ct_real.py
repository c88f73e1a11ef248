"""Lungs on the real scans of ``../shared/data/ct`` (issue 24): volumes, density, involvement,
score and seconds per scan, whole-lung Dice on the CIP scan, and the refusals.

    python benchmarks/bench_ct_real.py [--data ../shared/data/ct]

Per scan: lung volume (mL), mean lung density (HU), % involved (density method), score /30 and
the zones not scored, wall seconds of ``measure_scan`` (read included); on COVID-CT-MD, the
slice-level AUC of lesion area against the radiologists' infected slices (``slice_labels.csv``;
slices matched by position along z); on CIP, the Dice of the lung mask against its whole-lung
mask; on a DICOM series, the wall seconds and size of writing the DICOM SEG of the masks (not
counted in the scan's seconds). Scans that are not scored print the reason. Targets: the normal
scan 2–8.5 L, below −650 HU, ≤ 1 % involved; CIP Dice ≥ 0.95; the abdomen, the mediastinal crop
and the 2-slice series refused. A scan that is absent is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct"
SCANS = [
    "covid-ct-md/normal001",
    "covid-ct-md/P001",
    "covid-ct-md/cap001",
    "cip-lowres-chest/ct-64.nrrd",
    "totalseg-examples/chest_crop.nii.gz",
    "totalseg-examples/abdomen_lung_bases.nii.gz",
    "totalseg-examples/dicom_abdomen_j2k",
    "dicom-lungmask",
]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half): P(score of a positive > of a negative)."""
    pos, neg = scores[labels > 0], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater) / (len(pos) * len(neg))


def slice_auc(data: Path, name: str, lesions: np.ndarray) -> float:
    """AUC of lesion area per slice against the radiologists' ``infected`` slices."""
    import pandas as pd

    table = pd.read_csv(data / "covid-ct-md" / "slice_labels.csv")
    rows = table[table["subject"] == name].sort_values("ImagePositionPatient_z")
    if len(rows) != lesions.shape[0]:
        return float("nan")
    area = np.count_nonzero(lesions.reshape(lesions.shape[0], -1), axis=1).astype(float)
    return auc(area, rows["infected"].to_numpy())


def cip_dice(data: Path, volume, lungs: np.ndarray) -> float:
    import nibabel as nib

    from celltrial.imaging.io import _read_sitk

    raw, _ = _read_sitk(data / "cip-lowres-chest" / "wholeLung-64.nrrd")
    oriented = nib.orientations.apply_orientation(np.asarray(raw), volume.ornt)
    truth = np.transpose(oriented, (2, 1, 0)) > 0
    found = lungs > 0
    return 2.0 * np.count_nonzero(truth & found) / (truth.sum() + found.sum())


def seg_seconds(result) -> str:
    """Wall seconds and size of writing the scan's DICOM SEG (as ``celltrial ct segment`` does),
    or why none could be written."""
    import tempfile

    from celltrial.imaging.dicom_seg import write_dicom_seg
    from celltrial.imaging.io import ImagingError

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        try:
            path = write_dicom_seg(
                result.volume,
                result.lungs,
                result.lesions,
                Path(folder) / "segmentation.dcm",
                lesion_method=result.quantification.method,
            )
        except ImagingError as exc:
            return f"not written ({exc})"
        seconds = time.perf_counter() - start
        return f"{seconds:.2f} s ({path.stat().st_size / 1e6:.1f} MB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    from celltrial.imaging.io import ImagingError
    from celltrial.imaging.scan import measure_scan

    for name in SCANS:
        path = args.data / name
        if not path.exists():
            print(f"{name}: absent, skipped")
            continue
        start = time.perf_counter()
        try:
            result = measure_scan(path)
        except ImagingError as exc:
            print(f"{name}: not scored ({time.perf_counter() - start:.1f} s): {exc}")
            continue
        seconds = time.perf_counter() - start
        q = result.quantification
        unscored = [z for z, v in q.zones.items() if v["score"] is None]
        line = (
            f"{name}: lungs {q.lung_ml:.0f} mL, mean density {q.mean_lung_density_hu:.0f} HU, "
            f"{q.involvement_pct:.1f} % involved, score {q.score}/30"
            + (f" (not scored: {', '.join(unscored)})" if unscored else "")
            + f", {seconds:.1f} s"
        )
        if name.startswith("covid-ct-md/"):
            line += f", slice AUC {slice_auc(args.data, name.split('/')[1], result.lesions):.2f}"
        if name.startswith("cip-"):
            line += f", whole-lung Dice {cip_dice(args.data, result.volume, result.lungs):.3f}"
        if result.volume.meta.get("instances"):
            line += f", DICOM SEG {seg_seconds(result)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
