"""CT scans for the demo cohort: small phantom volumes whose lesions follow each subject's course.

The simulated cohort lists imaging studies at the protocol's CT visits with no file. Here each
gets a phantom volume (written into the study directory, ``ct/<subject>_<date>.nii.gz``, never
into the repository) whose lesion radii scale with the subject's WHO clinical progression score
at the scan; the volumes are then quantified and stored like any scan (``celltrial ct``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Demo volume: 80 × 80 pixels of 4 mm, 10 mm slices over the chest (24 slices): small and fast.
DEMO_SHAPE = (80, 80)
DEMO_PIXEL_MM = 4.0
DEMO_SLICE_MM = 10.0
DEMO_Z_RANGE = (-120.0, 120.0)


def compute_lesion_factor(who_scale: float) -> float:
    """Lesion radius factor from the WHO clinical progression score (4 mild … 9 critical)."""
    if not np.isfinite(who_scale):
        return 0.6
    return float(np.clip(0.5 + 0.25 * (who_scale - 4.0), 0.3, 1.8))


def plan_demo_scans(cohort, folder: Path | str) -> pd.DataFrame:
    """One row per CT of ``cohort.imaging``: subject_id, time, path, lesion factor."""
    folder = Path(folder)
    imaging = cohort.imaging
    if imaging is None or imaging.empty:
        return pd.DataFrame(columns=["subject_id", "time", "path", "factor"])
    status = cohort.clinical_status.sort_values("time")
    rows = []
    for scan in imaging.itertuples(index=False):
        mine = status[status["subject_id"] == scan.subject_id]
        who = float("nan")
        if not mine.empty:
            gaps = (mine["time"] - scan.time).abs()
            who = float(mine.loc[gaps.idxmin(), "who_scale"])
        when = pd.Timestamp(scan.time)
        name = f"{scan.subject_id}_{when.strftime('%Y-%m-%dT%H%M')}.nii.gz"
        rows.append(
            {
                "subject_id": scan.subject_id,
                "time": when,
                "path": folder / name,
                "factor": compute_lesion_factor(who),
            }
        )
    return pd.DataFrame(rows)


def write_demo_scan(path: Path | str, factor: float, *, seed: int = 0) -> Path:
    """Write one demo phantom (lesion radii × ``factor``) as NIfTI."""
    import nibabel as nib

    # imported here: a demo whose phantoms are all in the cache draws none (SciPy's ndimage)
    from celltrial.imaging.phantom import DEFAULT_LESIONS, make_chest_phantom, make_follow_up

    phantom = make_chest_phantom(
        shape=DEMO_SHAPE,
        pixel_mm=DEMO_PIXEL_MM,
        slice_mm=DEMO_SLICE_MM,
        z_range=DEMO_Z_RANGE,
        noise_hu=20.0,
        lesions=make_follow_up(DEFAULT_LESIONS, factor),
        seed=seed,
        sub_slices=1,
    )
    data = np.transpose(phantom.volume.hu, (2, 1, 0))
    nib.save(nib.Nifti1Image(data, phantom.volume.native_affine), str(path))
    return Path(path)


def _write_and_measure(path: Path, factor: float, seed: int):
    from celltrial.imaging.records import measure_scan_record, study_views_dir

    # the demo scans live in <study>/ct/, so the study directory is two levels up
    views = study_views_dir(Path(path).parent.parent)
    return measure_scan_record(write_demo_scan(path, factor, seed=seed), views_dir=views)


def _measure_demo_scans(
    paths: list[Path], factors: list[float], seeds: list[int], *, workers: int | None
) -> list:
    """Write and measure phantoms, in worker processes when there are several and more than
    one core (2 cores, 18 scans: 2.2 s wall instead of 3.5 s)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    n = min(workers or os.cpu_count() or 1, len(paths))
    if n > 1:
        with ProcessPoolExecutor(max_workers=n) as pool:
            chunk = -(-len(paths) // n)
            return list(pool.map(_write_and_measure, paths, factors, seeds, chunksize=chunk))
    return [_write_and_measure(*a) for a in zip(paths, factors, seeds, strict=True)]


#: Subjects of a demo cohort that get phantom scans (the first ones): enough to show the CT
#: section, few enough that a 500-subject demo stays quick.
MAX_DEMO_CT_SUBJECTS = 10


def add_demo_scans(study, cohort, *, user: str, seed: int = 0, workers: int | None = None) -> int:
    """Write, quantify (on local cores) and store the demo cohort's CT scans; returns the count.

    Only the first :data:`MAX_DEMO_CT_SUBJECTS` subjects get scans. Phantoms measured by an
    earlier demo with the same code are taken from the cache (:mod:`~.demo_cache`)."""
    from celltrial.imaging.demo_cache import cache_dir, keep_demo_scan, recall_demo_scan
    from celltrial.imaging.records import store_ct_results, study_views_dir

    scans = plan_demo_scans(cohort, Path(study.directory) / "ct")
    first = sorted(scans["subject_id"].unique())[:MAX_DEMO_CT_SUBJECTS]
    scans = scans[scans["subject_id"].isin(first)].reset_index(drop=True)
    if scans.empty:
        return 0
    scans["path"].iloc[0].parent.mkdir(parents=True, exist_ok=True)
    paths, factors = list(scans["path"]), list(scans["factor"])
    seeds = [seed + i for i in range(len(scans))]
    views, folder = study_views_dir(study.directory), cache_dir()
    records = [
        recall_demo_scan(p, f, s, views, folder=folder)
        for p, f, s in zip(paths, factors, seeds, strict=True)
    ]
    missing = [i for i, record in enumerate(records) if record is None]
    measured = _measure_demo_scans(
        [paths[i] for i in missing],
        [factors[i] for i in missing],
        [seeds[i] for i in missing],
        workers=workers,
    )
    for i, record in zip(missing, measured, strict=True):
        records[i] = record
        keep_demo_scan(record, factors[i], seeds[i], views, folder=folder)
    store_ct_results(
        study.engine,
        study.study_id,
        records,
        subjects=list(scans["subject_id"]),
        times=[t.to_pydatetime() for t in scans["time"]],
        user=user,
        reason="demo: phantom CT scans",
    )
    return len(records)


__all__ = ["add_demo_scans", "compute_lesion_factor", "plan_demo_scans", "write_demo_scan"]
