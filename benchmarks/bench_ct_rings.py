"""Ground-glass rings around vessels (issue 24): the shipped shell rule against none and against a
3-D tubularity (Hessian) rule, on the real scans of ``../shared/data/ct``.

    python benchmarks/bench_ct_rings.py [--data ../shared/data/ct]

For each COVID-CT-MD scan (lungs as ``celltrial ct segment`` finds them), the density lesions
- without the shell rule (``SHELL_MM`` = 0: the method before the rule),
- with it (shipped: ground-glass of lesions narrower than 3 mm everywhere dropped),
- without it but with a Hessian halo: ground-glass within 1 mm of a bright tube (Hessian at 1, 2
  and 3 mm on a ~1.3 mm in-plane grid: two strongly negative eigenvalues, the third small),
- with both;
and for each, % involved, and on the labelled scans the slice AUC, per lung and per zone as
``bench_ct_real.py`` scores them; the CPU seconds of the lesions, of the shell rule alone and
of the Hessian rule. The 2-slice lungmask series (not scored by celltrial: too little lung) is
listed by its ground-glass voxels: its rings are where the rule was looked at before the
labelled scans. The anchor (a fixed SciPy workload, before and
after) tells how busy the machine was.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_ct_real import DEFAULT_DATA, agreement, anchor, slice_labels
from scipy import ndimage as ndi

SCANS = ["covid-ct-md/normal001", "covid-ct-md/P001", "covid-ct-md/cap001", "dicom-lungmask"]


def bright_tubes(hu: np.ndarray, lungs: np.ndarray, spacing, sigmas_mm=(1.0, 2.0, 3.0)):
    """Voxels of bright tubes (vessels) in and near the lungs: Hessian eigenvalues at each scale,
    on an in-plane grid coarsened to about 1.3 mm, at voxels brighter than −300 HU."""
    factor = max(1, round(1.2 / spacing[1]))
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    z0, z1 = zs.min(), zs.max() + 1
    ys, xs = np.nonzero(lungs[z0:z1].any(axis=0))
    m = int(np.ceil(6 / spacing[1]))
    y0, x0 = max(ys.min() - m, 0), max(xs.min() - m, 0)
    y1 = y0 + (min(ys.max() + m + 1, hu.shape[1]) - y0) // factor * factor
    x1 = x0 + (min(xs.max() + m + 1, hu.shape[2]) - x0) // factor * factor
    box = hu[z0:z1, y0:y1, x0:x1].astype(np.float32)
    coarse = box.reshape(z1 - z0, (y1 - y0) // factor, factor, -1, factor).mean(axis=(2, 4))
    grid = (spacing[0], spacing[1] * factor, spacing[2] * factor)
    near = ndi.binary_dilation(lungs[z0:z1, y0:y1:factor, x0:x1:factor] > 0, iterations=3)
    at = np.nonzero(near & (ndi.gaussian_filter(coarse, 0.5) >= -300.0))
    tube = np.zeros(coarse.shape, dtype=bool)
    for sigma in sigmas_mm:
        hessian = np.empty((len(at[0]), 3, 3), dtype=np.float32)
        for i in range(3):
            for j in range(i, 3):
                order = [0, 0, 0]
                order[i] += 1
                order[j] += 1
                sig = tuple(sigma / g for g in grid)
                d = ndi.gaussian_filter(coarse, sig, order=order)[at]
                hessian[:, i, j] = hessian[:, j, i] = d * sigma * sigma / (grid[i] * grid[j])
        values = np.linalg.eigvalsh(hessian)
        values = np.take_along_axis(values, np.argsort(np.abs(values), axis=1), axis=1)
        l1, l2, l3 = values[:, 0], values[:, 1], values[:, 2]
        ok = (l2 < 0) & (l3 < 0) & (-l2 >= 40.0) & (np.abs(l2) >= 0.3 * np.abs(l3))
        ok &= np.abs(l1) <= 0.5 * np.abs(l2)
        tube[tuple(a[ok] for a in at)] = True
    out = np.zeros(hu.shape, dtype=bool)
    out[z0:z1, y0:y1, x0:x1] = np.repeat(np.repeat(tube, factor, 1), factor, 2)
    return out


def halo(mask: np.ndarray, spacing, reach_mm: float) -> np.ndarray:
    """Voxels within ``reach_mm`` of ``mask`` (the next slice counts as within reach)."""
    out = np.zeros(mask.shape, dtype=bool)
    objects = ndi.find_objects(mask.astype(np.uint8))
    if not objects:
        return out
    m = int(np.ceil(reach_mm / spacing[1])) + 1
    box = tuple(
        slice(max(s.start - (1 if i == 0 else m), 0), s.stop + (1 if i == 0 else m))
        for i, s in enumerate(objects[0])
    )
    sampling = (min(spacing[0], reach_mm), spacing[1], spacing[2])
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=sampling) <= reach_mm
    return out


def lesions_with(hu, lungs, spacing, shell_mm: float) -> tuple[np.ndarray, float]:
    """Density lesions with the shell rule at ``shell_mm`` (0: off) and their CPU seconds."""
    from celltrial.imaging import lesions as module

    kept = module.SHELL_MM
    module.SHELL_MM = shell_mm
    try:
        cpu = time.process_time()
        found = module.compute_density_lesions(hu, lungs, spacing)
        return found, time.process_time() - cpu
    finally:
        module.SHELL_MM = kept


def describe(name: str, data: Path, volume, lungs, lesions) -> str:
    from celltrial.imaging.quantify import summarize_ct

    q = summarize_ct(volume.hu, lungs, lesions, spacing=volume.spacing, method="density")
    text = f"{q.involvement_pct:.2f} % involved, ground-glass {np.count_nonzero(lesions == 1)} vx"
    if name.startswith("covid-ct-md/"):
        rows = slice_labels(data, name.split("/")[1], lesions.shape[0])
        if rows is not None:
            text += ", " + agreement(rows, lungs, lesions, q.zones)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    from celltrial.imaging.io import read_ct
    from celltrial.imaging.lesions import SHELL_MM, _drop_shells
    from celltrial.imaging.lungs import segment_lungs

    print(f"anchor: {anchor()}", flush=True)
    for name in SCANS:
        path = args.data / name
        if not path.exists():
            print(f"{name}: absent, skipped")
            continue
        volume = read_ct(path)
        lungs = segment_lungs(volume).labels
        hu, spacing = volume.hu, volume.spacing
        before, _ = lesions_with(hu, lungs, spacing, 0.0)
        after, cpu_after = lesions_with(hu, lungs, spacing, SHELL_MM)
        ruled = before.copy()
        cpu = time.process_time()
        _drop_shells(ruled, SHELL_MM / spacing[1])
        cpu_rule = time.process_time() - cpu
        assert np.array_equal(ruled, after)
        cpu = time.process_time()
        near_tube = halo(bright_tubes(hu, lungs, spacing), spacing, 1.0)
        cpu_hessian = time.process_time() - cpu
        print(f"{name}:", flush=True)
        print(f"  no rule: {describe(name, args.data, volume, lungs, before)}", flush=True)
        print(f"  shell rule (shipped): {describe(name, args.data, volume, lungs, after)}")
        for label, base in (("Hessian halo", before), ("shell rule + Hessian halo", after)):
            found = base.copy()
            found[(found == 1) & near_tube] = 0
            print(f"  {label}: {describe(name, args.data, volume, lungs, found)}", flush=True)
        print(
            f"  CPU s: density lesions {cpu_after:.2f}, of which the shell rule {cpu_rule:.2f}; "
            f"Hessian tubes and halo {cpu_hessian:.2f}",
            flush=True,
        )
    print(f"anchor: {anchor()}", flush=True)


if __name__ == "__main__":
    main()
