"""Time, CPU and peak memory of `celltrial report --format both` for 5 and 500 subjects, beside
WeasyPrint and matplotlib alone on the same content (the anchor, measured in the same run).

Run: python benchmarks/bench_report.py [--sizes 5 500] [--studies DIR]

Each size's demo study is built first (not timed; kept in --studies DIR to run again). Then, each
in a fresh process:
- the command as a user runs it, ``celltrial report DIR --format both`` (start-up included),
  wall and CPU seconds (the process and its workers);
- report: ``write_report(format="both")`` with worker processes (as shipped) and without
  (every section and figure in one process), wall and CPU seconds (the process and its workers),
  peak memory (the larger of the process and its largest worker), PDF pages of the body;
- anchor, WeasyPrint alone: the same report HTML to PDF (``HTML(string=...).write_pdf``);
- WeasyPrint after its warm-up: ``write_pdf`` of the same HTML after ``prepare_pdf`` (which
  the report runs while its sections are built), i.e. what is left on the report's last step;
- anchor, matplotlib alone: the same subject-profile figures (six panels, the same points) drawn
  with plain ``pyplot`` defaults and saved as PNG at the same resolution.
The machine may be shared: CPU seconds are the steadier figure; compare each with its anchor.
The load average is printed before and after.
Targets (issue 23): 5 subjects under 10 s, 500 under 60 s (both formats, 2 cores); the
500-subject body at most 40 pages and under 1 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Runs in a child process: argv = study dir, out dir, "workers" | "serial".
REPORT = """
import json, os, resource, sys, time
if sys.argv[3] == "serial":
    os.cpu_count = lambda: 1  # sections and profiles in this one process
from pathlib import Path
from celltrial.report import write_report
from celltrial.study import open_study
wall, cpu = time.perf_counter(), time.process_time()
study = open_study(Path(sys.argv[1]), read_only=True)
paths = write_report(study, out=Path(sys.argv[2]), report_format="both")
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "wall": time.perf_counter() - wall,
    "cpu": time.process_time() - cpu + children.ru_utime + children.ru_stime,
    "peak_mib": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, children.ru_maxrss) / 1024,
    "paths": [str(p) for p in paths],
}))
"""

#: WeasyPrint alone on the report's HTML: argv = html file, pdf file.
WEASYPRINT = """
import json, resource, sys, time
from pathlib import Path
wall, cpu = time.perf_counter(), time.process_time()
from weasyprint import HTML
HTML(string=Path(sys.argv[1]).read_text(encoding="utf-8")).write_pdf(sys.argv[2])
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

#: What is left of the PDF step after the warm-up: argv = html file, pdf file.
WEASYPRINT_WARM = """
import json, resource, sys, time
from pathlib import Path
from celltrial.report.pdf import prepare_pdf, write_pdf
html = Path(sys.argv[1]).read_text(encoding="utf-8")
prepare_pdf()
wall, cpu = time.perf_counter(), time.process_time()
write_pdf(html, sys.argv[2])
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

#: matplotlib alone: the profile figures' data drawn with pyplot defaults; argv = study dir, n.
MATPLOTLIB = """
import io, json, resource, sys, time
from pathlib import Path
from celltrial.study import open_study, read_study_frames
from celltrial.report.profiles import PROFILE_DPI, PROFILE_SIZE_IN
study = open_study(Path(sys.argv[1]), read_only=True)
frames = read_study_frames(study)
codes = frames.subjects["subject_id"].tolist()[: int(sys.argv[2])]
obs = {c: rows for c, rows in frames.observations.groupby("subject_id")}
status = {c: rows for c, rows in frames.clinical_status.groupby("subject_id")}
wall, cpu = time.perf_counter(), time.process_time()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
for code in codes:
    figure, axes = plt.subplots(3, 2, figsize=PROFILE_SIZE_IN, sharex=True)
    rows = obs.get(code)
    if code in status:
        axes[0, 0].step(status[code]["study_day"], status[code]["who_scale"], where="post")
    for axis, tests in zip(axes.ravel()[1:5], (["SPO2"], ["CRP", "IL6"], ["DDIMER"],
                                                ["LYM", "NEUT"])):
        for test in tests:
            if rows is not None:
                part = rows[rows["test"] == test]
                axis.plot(part["study_day"], part["value"], "o-", markersize=3, label=test)
        axis.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PROFILE_DPI)
    plt.close(figure)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


#: The command as a user runs it: argv = study dir, out dir; prints wall and CPU (with workers).
COMMAND = """
import json, resource, subprocess, sys, time
wall = time.perf_counter()
subprocess.run([sys.executable, "-c", "from celltrial.cli import app; app(prog_name='celltrial')",
                "report", sys.argv[1], "--format", "both", "--out", sys.argv[2]],
               check=True, capture_output=True)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.perf_counter() - wall,
                  "cpu": children.ru_utime + children.ru_stime,
                  "peak_mib": children.ru_maxrss / 1024}))
"""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def child(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def pages(pdf: Path) -> int | None:
    """The PDF's page count (pdfinfo, poppler-utils), None without it."""
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo is None:
        return None
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages")))


def study_of(size: int, studies: Path) -> Path:
    """The demo study of ``size`` subjects (built once, kept for the next run)."""
    from celltrial.demo import run_demo

    folder = studies / f"demo-{size}"
    if not (folder / "celltrial.db").exists():
        run_demo(folder, n_subjects=size, seed=2020, force=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 500])
    parser.add_argument("--studies", type=Path, default=None, help="keep the demo studies here")
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        studies = args.studies or Path(tmp)
        studies.mkdir(parents=True, exist_ok=True)
        print(f"{'subjects':>8}  {'run':<22} {'wall s':>7} {'CPU s':>7} {'peak MiB':>8}  pages")
        for size in args.sizes:
            study = study_of(size, studies)
            from celltrial.report.build import PROFILES_IN_BODY
            from celltrial.report.profiles import MAX_PROFILES

            rows = []
            command_out = Path(tmp) / f"command-{size}"
            rows.append(
                ("celltrial report --both", child(COMMAND, str(study), str(command_out)), None)
            )
            for mode in ("workers", "serial"):
                out = Path(tmp) / f"report-{size}-{mode}"
                result = child(REPORT, str(study), str(out), mode)
                pdf = out / "report.pdf"
                rows.append((f"report, {mode}", result, pages(pdf)))
            html = out / "report.html"
            rows.append(
                ("anchor: WeasyPrint alone", child(WEASYPRINT, str(html), str(out / "w.pdf")), None)
            )
            rows.append(
                (
                    "WeasyPrint after warm-up",
                    child(WEASYPRINT_WARM, str(html), str(out / "w2.pdf")),
                    None,
                )
            )
            n_profiles = min(size, MAX_PROFILES)
            where = "body" if size <= PROFILES_IN_BODY else "listings"
            rows.append(
                (
                    f"anchor: matplotlib x{n_profiles}",
                    child(MATPLOTLIB, str(study), str(n_profiles)),
                    None,
                )
            )
            for name, figures, count in rows:
                print(
                    f"{size:>8}  {name:<22} {figures['wall']:>7.2f} {figures['cpu']:>7.2f} "
                    f"{figures['peak_mib']:>8.0f}  {'' if count is None else count}"
                )
            print(
                f"{'':>8}  (subject profiles in the {where}; listings file: "
                f"{'yes' if (out / 'report-listings.html').exists() else 'no'})"
            )
    print(f"load average after:  {load_average()}")


if __name__ == "__main__":
    main()
