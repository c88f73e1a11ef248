"""Seconds and peak memory of the CT pipeline (read, lungs, lesions, quantification).

    python benchmarks/bench_ct.py [--size 512] [--slices 300]

Builds a phantom of SIZE × SIZE × SLICES (0.7 mm pixels, 1 mm slices), writes it as an
uncompressed NIfTI, then times the pipeline from the file. Peak memory is the largest traced
allocation (tracemalloc, which numpy reports to) during the run, compared with the int16 volume.
Targets: ≤ 10 s and ≤ 4 × the int16 volume on a 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    from celltrial.imaging.phantom import make_chest_phantom
    from celltrial.imaging.scan import measure_scan

    pixel_mm = 360.0 / args.size
    started = time.perf_counter()
    phantom = make_chest_phantom(
        shape=(args.size, args.size),
        pixel_mm=pixel_mm,
        slice_mm=1.0,
        z_range=(-args.slices / 2, args.slices / 2),
        noise_hu=20.0,
    )
    print(f"phantom {phantom.volume.hu.shape} built in {time.perf_counter() - started:.0f} s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "phantom.nii"
        data = np.transpose(phantom.volume.hu, (2, 1, 0))
        nib.save(nib.Nifti1Image(data, phantom.volume.native_affine), str(path))
        truth = phantom.truth
        volume_bytes = phantom.volume.hu.nbytes
        del phantom, data
        tracemalloc.start()
        started = time.perf_counter()
        result = measure_scan(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    q = result.quantification
    print(f"pipeline: {seconds:.1f} s (target ≤ 10 s)")
    print(
        f"peak traced memory: {peak / 1e6:.0f} MB = {peak / volume_bytes:.2f} × the int16 volume "
        f"({volume_bytes / 1e6:.0f} MB; target ≤ 4 ×)"
    )
    for key, found in (
        ("lung", q.lung_ml),
        ("ground_glass", q.ground_glass_ml),
        ("consolidation", q.consolidation_ml),
    ):
        print(f"{key}: {found:.1f} mL vs truth {truth[key]:.1f} mL ({found / truth[key] - 1:+.1%})")


if __name__ == "__main__":
    main()
