"""Seconds and peak memory of the CT pipeline (read, lungs, lesions, quantification).

    python benchmarks/bench_ct.py [--size 512] [--slices 300] [--runs 1] [--phantom FILE]
                                  [--threads N] [--no-trace]

Builds a phantom of SIZE × SIZE × SLICES (360 mm field of view, so 0.7 mm pixels at 512; 1 mm
slices; 20 HU noise) and writes it as an uncompressed NIfTI (``--phantom FILE`` keeps it there,
with its truth volumes beside it, and reuses it next time). Building the phantom is not measured.

Each run is a fresh child process that imports celltrial and the libraries the pipeline uses,
then calls ``measure_scan(path)`` on the file: read (NIfTI, checksum, reorientation to int16),
lungs, lesions (density method) and quantification — what ``celltrial ct segment`` does before it
writes its outputs. The child reports:

- ``wall`` and ``cpu`` seconds of ``measure_scan`` (``time.perf_counter`` and
  ``time.process_time``, which sums all threads and is less sensitive to other processes' load);
- peak memory: the child's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``
  just before the call) minus its resident set at that moment (interpreter and imported modules).
  It counts everything the pipeline holds: the int16 volume itself (a memory-mapped file's pages
  count too, as they are read), masks, temporaries, numpy's or any library's, and the malloc
  arenas' slack;
- in a second child, the ``tracemalloc`` peak per stage, cumulative (what is still held from the
  earlier stages counts: from ``read`` on, the volume), with stage CPU seconds, which tracemalloc
  slows down. numpy reports its allocations to tracemalloc; memory-mapped data and some C
  libraries' buffers are not seen.

``--threads N`` sets :data:`celltrial.imaging.parallel.WORKERS` (default 1).

The file was just written, so it is read from the page cache (a cold disk read is not measured).
Memory is given as a multiple of the volume's int16 size. The load average (``os.getloadavg``)
is printed before each run: other processes on the machine inflate wall time, not CPU time.
Targets (issue 10): ≤ 10 s and ≤ 4 × the int16 volume on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_phantom(path: Path, size: int, slices: int) -> dict[str, float]:
    """Write the phantom as an uncompressed NIfTI at ``path``; return its truth volumes (mL)."""
    import nibabel as nib
    import numpy as np

    from celltrial.imaging.phantom import make_chest_phantom

    started = time.perf_counter()
    phantom = make_chest_phantom(
        shape=(size, size),
        pixel_mm=360.0 / size,
        slice_mm=1.0,
        z_range=(-slices / 2, slices / 2),
        noise_hu=20.0,
    )
    print(f"phantom {phantom.volume.hu.shape} built in {time.perf_counter() - started:.0f} s")
    data = np.transpose(phantom.volume.hu, (2, 1, 0))
    nib.save(nib.Nifti1Image(data, phantom.volume.native_affine), str(path))
    return dict(phantom.truth)


def child(path: str, trace: bool, threads: int | None) -> None:
    """Run the pipeline once on ``path`` and print its figures as JSON (in a fresh process)."""
    import nibabel  # noqa: F401  (imported before the baseline: the pipeline's libraries)
    import numpy as np
    import scipy.ndimage
    import scipy.spatial  # noqa: F401
    import skimage.morphology  # noqa: F401  (earlier versions of the pipeline used it)

    from celltrial.imaging.io import read_ct
    from celltrial.imaging.lesions import segment_lesions
    from celltrial.imaging.lungs import segment_lungs
    from celltrial.imaging.quantify import load_bands, summarize_ct
    from celltrial.imaging.scan import measure_scan

    try:
        from celltrial.imaging import parallel
    except ImportError:  # a version of the pipeline without threads
        parallel = None
    if parallel is not None and threads:
        parallel.WORKERS = threads
    load_bands()
    report: dict[str, object] = {"threads": parallel.WORKERS if parallel is not None else 1}
    if not trace:
        _reset_peak()
        baseline = _status_kib("VmRSS")
        started, cpu = time.perf_counter(), time.process_time()
        result = measure_scan(path)
        report["wall"] = time.perf_counter() - started
        report["cpu"] = time.process_time() - cpu
        report["peak_bytes"] = (_status_kib("VmHWM") - baseline) * 1024
        report["baseline_bytes"] = baseline * 1024
        report["volume_bytes"] = int(np.prod(result.volume.hu.shape)) * 2
        q = result.quantification
        report["found"] = {
            "lung": q.lung_ml,
            "ground_glass": q.ground_glass_ml,
            "consolidation": q.consolidation_ml,
        }
    else:
        import tracemalloc

        tracemalloc.start()
        stages = {}

        def stage(name, run):
            tracemalloc.reset_peak()
            cpu = time.process_time()
            out = run()
            stages[name] = {
                "cpu": time.process_time() - cpu,
                "peak_bytes": tracemalloc.get_traced_memory()[1],
            }
            return out

        volume = stage("read", lambda: read_ct(path))
        lungs = stage("lungs", lambda: segment_lungs(volume))
        lesions = stage("lesions", lambda: segment_lesions(volume, lungs.labels))
        stage(
            "quantify",
            lambda: summarize_ct(volume.hu, lungs.labels, lesions, spacing=volume.spacing),
        )
        report["stages"] = stages
        report["volume_bytes"] = int(np.prod(volume.hu.shape)) * 2
    print(json.dumps(report))


def _reset_peak() -> None:
    """Reset this process's peak resident set to the current one (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        print("warning: cannot reset VmHWM; the peak includes start-up", file=sys.stderr)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_child(path: Path, *, trace: bool = False, threads: int | None = None) -> dict:
    """One fresh process measuring the pipeline on ``path``."""
    command = [sys.executable, __file__, "--child", str(path)] + (["--trace"] if trace else [])
    command += ["--threads", str(threads)] if threads else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1, help="timed runs (fresh processes)")
    parser.add_argument("--phantom", type=Path, help="keep (or reuse) the phantom file here")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    parser.add_argument("--threads", type=int, help="threads per scan (default 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.trace, args.threads)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = args.phantom or Path(folder) / "phantom.nii"
        truth_file = path.with_suffix(".truth.json")
        if path.exists() and truth_file.exists():
            truth = json.loads(truth_file.read_text())
            print(f"reusing {path}")
        else:
            truth = build_phantom(path, args.size, args.slices)
            truth_file.write_text(json.dumps(truth))
        for i in range(args.runs):
            load = os.getloadavg()
            r = run_child(path, threads=args.threads)
            size = r["volume_bytes"]
            peak, base = r["peak_bytes"], r["baseline_bytes"]
            print(
                f"run {i + 1} ({r['threads']} threads): {r['wall']:.1f} s wall (target ≤ 10 s), "
                f"{r['cpu']:.1f} s CPU; "
                f"peak {peak / 1e6:.0f} MB = {peak / size:.2f} × the int16 volume "
                f"({size / 1e6:.0f} MB; target ≤ 4 ×) above the {base / 1e6:.0f} MB of the "
                f"started interpreter; load average {load[0]:.2f} {load[1]:.2f}"
            )
        if args.runs:
            for key, found in r["found"].items():
                error = found / truth[key] - 1
                print(f"  {key}: {found:.1f} mL vs truth {truth[key]:.1f} mL ({error:+.1%})")
        if not args.no_trace:
            load = os.getloadavg()
            traced = run_child(path, trace=True, threads=args.threads)
            stages, size = traced["stages"], traced["volume_bytes"]
            print(f"stages under tracemalloc (slower; load average {load[0]:.2f}):")
            for name, s in stages.items():
                print(
                    f"  {name:9s} {s['cpu']:5.1f} s CPU, traced peak "
                    f"{s['peak_bytes'] / size:.2f} × the int16 volume"
                )


if __name__ == "__main__":
    main()
