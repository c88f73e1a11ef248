"""Lungs on the real scans of ``../shared/data/ct`` (issue 24): volumes, density, involvement,
score and seconds per scan, whole-lung Dice on the CIP scan, and the refusals.

    python benchmarks/bench_ct_real.py [--data ../shared/data/ct]

Per scan: lung volume (mL), mean lung density (HU), % involved (density method), score /30 and
the zones not scored, wall and CPU seconds of ``measure_scan`` (read included; CPU summed over
its threads); on COVID-CT-MD, the slice-level AUC of lesion area against the radiologists'
infected slices (``slice_labels.csv``; slices matched by position along z), the same per lung
(lesion area in the right lung against slices with infection in RUL, RML or RLL; left: LUL,
LLL) and per zone (upper, middle, lower third of each lung: the zone scored ≥ 1 against a
radiologist's infection of that lung on a slice of the zone); on CIP, the Dice of the lung mask
against its whole-lung mask; on a DICOM series, the seconds, size and peak memory added by writing
the DICOM SEG of the masks (not counted in the scan's seconds). Scans that are not scored print
the reason. Targets: the normal scan 2–8.5 L, below −650 HU, ≤ 1 % involved; slice AUC ≥ 0.90 on
the COVID-19 and pneumonia scans; CIP Dice ≥ 0.95; the abdomen, the mediastinal crop and the
2-slice series refused; 512 × 512 × 150 DICOM series ≤ 15 s on 2 cores. A scan that is absent is
skipped with a line saying so. The anchor (a fixed SciPy workload, before and after the scans)
tells how busy the machine was in this run.
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


#: The radiologists' lobes of each lung (``slice_labels.csv`` columns); lung labels 1 right, 2 left.
LOBES = {1: ["RUL", "RML", "RLL"], 2: ["LUL", "LLL"]}


def slice_labels(data: Path, name: str, n_slices: int):
    """The radiologists' labels of a COVID-CT-MD scan, one row a slice from the most inferior
    (the internal orientation's order), or None when they do not match the scan's slices."""
    import pandas as pd

    table = pd.read_csv(data / "covid-ct-md" / "slice_labels.csv")
    rows = table[table["subject"] == name].sort_values("ImagePositionPatient_z")
    if len(rows) != n_slices or rows["infected"].isna().all():
        return None
    return rows.reset_index(drop=True)


def agreement(rows, lungs: np.ndarray, lesions: np.ndarray, zones: dict) -> str:
    """Slice-level AUC (both lungs, right, left) and per-zone agreement with the radiologists."""
    from celltrial.imaging.lungs import compute_zone_bounds

    n = lesions.shape[0]
    found = lesions.reshape(n, -1) > 0
    area = np.count_nonzero(found, axis=1).astype(float)
    text = f"slice AUC {auc(area, rows['infected'].to_numpy()):.3f}"
    marks = []
    for value, side in ((1, "right"), (2, "left")):
        side_area = np.count_nonzero(found & (lungs.reshape(n, -1) == value), axis=1)
        infected = rows[LOBES[value]].max(axis=1).to_numpy()
        text += f", {side} lung {auc(side_area.astype(float), infected):.3f}"
        present = (lungs == value).any(axis=(1, 2))
        bounds = compute_zone_bounds(present)
        for zone, (lo, hi) in zip(("upper", "middle", "lower"), bounds, strict=True):
            truth = bool(infected[lo:hi].max() > 0)
            score = zones[f"{side}_{zone}"]["score"]
            ours = score is not None and score >= 1
            mark = f"{side[0].upper()}{zone[0].upper()} {int(truth)}/{int(ours)}"
            marks.append((truth == ours, mark))
    agree = sum(m for m, _ in marks)
    listed = " ".join(t for _, t in marks)
    text += f"; zones agree {agree}/{len(marks)} (radiologists/ours: {listed})"
    return text


def network_agreement(rows, result) -> str:
    """The lesion network's lesions on the scan's HU slices (kept inside the lungs): % involved,
    and when the radiologists labelled the scan (``rows``), scored as :func:`agreement` scores
    the shipped method's; with its CPU seconds."""
    from celltrial.imaging.lesions import compute_learned_lesions
    from celltrial.imaging.quantify import summarize_ct

    cpu = time.process_time()
    volume = result.volume
    lesions = compute_learned_lesions(volume.hu, result.lungs, volume.spacing)
    cpu = time.process_time() - cpu
    q = summarize_ct(volume.hu, result.lungs, lesions, spacing=volume.spacing, method="learned")
    text = f"{q.involvement_pct:.2f} % involved"
    if rows is not None:
        text += ", " + agreement(rows, result.lungs, lesions, q.zones)
    return text + f", {cpu:.0f} CPU s"


def anchor() -> str:
    """A fixed SciPy workload (a 3-D Gaussian filter of 64 × 512 × 512 float32): CPU and wall
    seconds, to read the scans' seconds against on a shared machine."""
    from scipy import ndimage as ndi

    volume = np.random.default_rng(0).normal(size=(64, 512, 512)).astype(np.float32)
    cpu, wall = time.process_time(), time.perf_counter()
    ndi.gaussian_filter(volume, 2.0)
    return f"{time.process_time() - cpu:.2f} CPU s, {time.perf_counter() - wall:.2f} s wall"


def cip_dice(data: Path, volume, lungs: np.ndarray) -> float:
    import nibabel as nib

    from celltrial.imaging.io import _read_sitk

    raw, _ = _read_sitk(data / "cip-lowres-chest" / "wholeLung-64.nrrd")
    oriented = nib.orientations.apply_orientation(np.asarray(raw), volume.ornt)
    truth = np.transpose(oriented, (2, 1, 0)) > 0
    found = lungs > 0
    return 2.0 * np.count_nonzero(truth & found) / (truth.sum() + found.sum())


def _rss_mb() -> float:
    """The process's resident memory now (MB; Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def seg_seconds(result) -> str:
    """Wall and CPU seconds, size and peak resident memory added (sampled every 5 ms) of writing
    the scan's DICOM SEG (as ``celltrial ct segment`` does), or why none could be written."""
    import gc
    import tempfile
    import threading

    from celltrial.imaging.dicom_seg import write_dicom_seg
    from celltrial.imaging.io import ImagingError

    gc.collect()
    before = _rss_mb()
    peak, done = [before], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with tempfile.TemporaryDirectory() as folder:
        start, cpu = time.perf_counter(), time.process_time()
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
        finally:
            done.set()
            watcher.join()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return (
            f"{seconds:.2f} s, {cpu:.2f} CPU s ({path.stat().st_size / 1e6:.1f} MB; "
            f"peak memory +{peak[0] - before:.0f} MB over {before:.0f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--network",
        action="store_true",
        help="also run the lesion network (trained on display slices; its input window clips HU "
        "to -1100..150) on the COVID-CT-MD scans' HU slices and print its agreement and seconds "
        "(about 70 CPU s a scan)",
    )
    args = parser.parse_args()
    from celltrial.imaging.io import ImagingError
    from celltrial.imaging.scan import measure_scan

    print(f"anchor: {anchor()}", flush=True)
    for name in SCANS:
        path = args.data / name
        if not path.exists():
            print(f"{name}: absent, skipped")
            continue
        start, cpu = time.perf_counter(), time.process_time()
        try:
            result = measure_scan(path)
        except ImagingError as exc:
            print(f"{name}: not scored ({time.perf_counter() - start:.1f} s): {exc}")
            continue
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        q = result.quantification
        unscored = [z for z, v in q.zones.items() if v["score"] is None]
        line = (
            f"{name}: lungs {q.lung_ml:.0f} mL, mean density {q.mean_lung_density_hu:.0f} HU, "
            f"{q.involvement_pct:.1f} % involved, score {q.score}/30"
            + (f" (not scored: {', '.join(unscored)})" if unscored else "")
            + f", {seconds:.1f} s ({cpu:.1f} CPU s)"
        )
        rows = None
        if name.startswith("covid-ct-md/"):
            rows = slice_labels(args.data, name.split("/")[1], result.lesions.shape[0])
        if rows is not None:
            line += ", " + agreement(rows, result.lungs, result.lesions, q.zones)
        if args.network and name.startswith("covid-ct-md/"):
            line += "; lesion network on HU: " + network_agreement(rows, result)
        if name.startswith("cip-"):
            line += f", whole-lung Dice {cip_dice(args.data, result.volume, result.lungs):.3f}"
        if result.volume.meta.get("instances"):
            line += f", DICOM SEG {seg_seconds(result)}"
        print(line, flush=True)
    print(f"anchor: {anchor()}", flush=True)


if __name__ == "__main__":
    main()
