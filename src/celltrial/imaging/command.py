"""``celltrial ct …`` commands (a Typer sub-app; the main CLI registers it as ``ct``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from celltrial.cli_support import console, user_errors
from celltrial.errors import CelltrialError


class _ScansByDefault(TyperGroup):
    """``celltrial ct DIR SCAN...`` runs ``quantify``; named sub-commands run as usual."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["quantify", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="ct",
    help="Chest CT: lungs, lesions, scores. `celltrial ct DIR SCAN...` quantifies scans into a "
    "study.",
    no_args_is_help=True,
    add_completion=False,
    cls=_ScansByDefault,
    rich_markup_mode=None,
)


@app.callback()
def ct() -> None:
    """Chest CT: lungs, lesions, scores."""


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        width, level = (float(v) for v in text.split(","))
    except ValueError:
        raise CelltrialError(f"--window {text!r}: expected WIDTH,LEVEL such as 1500,-600") from None
    return width, level


@app.command("segment")
@user_errors
def segment(
    images: Annotated[
        list[Path], typer.Argument(help="CT inputs: DICOM folders, NIfTI, NRRD…", metavar="IMAGE")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder (one sub-folder per input).", metavar="PATH"),
    ],
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="WIDTH,LEVEL of 8-bit display images (default 1500,-600).",
            metavar="W,L",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="auto, density or learned.", metavar="METHOD")
    ] = "auto",
    overlay: Annotated[bool, typer.Option(help="Also write overlay.png.")] = True,
) -> None:
    """Segment lungs and lesions; write lungs.nii.gz, lesions.nii.gz and result.json per input
    (and segmentation.dcm, a DICOM SEG of the series, for DICOM input).

    An input that cannot be read as CT in HU or cannot be scored (not a chest, too little lung,
    lungs cut by the field of view) gets a result.json with the reason and no masks; the others
    are still done, and the command then exits 1.
    """
    from celltrial.imaging.io import ImagingError
    from celltrial.imaging.lungs import ZONES as ZONE_NAMES
    from celltrial.imaging.overlays import render_overlays
    from celltrial.imaging.scan import (
        claim_folder,
        measure_scan,
        output_names,
        write_refusal,
        write_scan_result,
    )
    from celltrial.imaging.scorable import NotScorable

    parsed = _parse_window(window)
    refused = 0
    for image, name in zip(images, output_names(images), strict=True):
        if not image.exists():
            raise CelltrialError(f"{image}: no such file or folder")
        try:
            result = measure_scan(image, method=method, window=parsed)
        except ImagingError as exc:
            reason = exc.reason if isinstance(exc, NotScorable) else str(exc)
            reason = reason.removeprefix(f"{image}: ")
            folder, _ = claim_folder(out, name, str(image))
            write_refusal(str(image), reason, folder)
            console.print(f"{image}: not scored: {reason} → {folder}")
            refused += 1
            continue
        folder, replaced = claim_folder(out, name, result.volume.source)
        written = write_scan_result(result, folder)
        if overlay:
            render_overlays([result], folder / "overlay.png")
        q = result.quantification
        if result.volume.meta.get("spacing_unknown"):
            per_ml = 1000.0 / result.volume.voxel_ml
            amounts = (
                f"lungs {q.lung_ml * per_ml:.0f} voxels, lesions {q.lesion_ml * per_ml:.0f} "
                "voxels (pixel size unknown)"
            )
        else:
            amounts = (
                f"lungs {q.lung_ml:.0f} mL, ground-glass {q.ground_glass_ml:.1f} mL, "
                f"consolidation {q.consolidation_ml:.1f} mL"
            )
        scored = [
            z
            for z, v in q.zones.items()
            if z.split("_")[1] in ZONE_NAMES and v["score"] is not None
        ]
        score = f"score {q.score}/30"
        if len(scored) < 6:
            score = f"score {q.score}/{5 * len(scored)} ({len(scored)} of 6 zones in the scan)"
        console.print(
            f"{image}: {amounts}, {q.involvement_pct:.1f} % involved, {score} → "
            f"{folder}" + (" (earlier result replaced)" if replaced else "")
        )
        for caveat in written["caveats"]:
            console.print(f"  note: {caveat}")
    if refused:
        raise CelltrialError(f"{refused} of {len(images)} input(s) not scored (reasons above)")


@app.command("quantify")
@user_errors
def quantify(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    scans: Annotated[
        list[Path], typer.Argument(help="CT scans: DICOM folders, NIfTI, NRRD…", metavar="SCAN")
    ],
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help="Subject of every scan (else from <SUBJECT>_<DATE> names).",
            metavar="ID",
        ),
    ] = None,
    when: Annotated[
        str | None,
        typer.Option(
            "--date", help="Scan date YYYY-MM-DD[THH:MM] (else from the file name).", metavar="DATE"
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="Dask scheduler address (default: local).", metavar="ADDRESS"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Local processes (default: all cores).", metavar="N"),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="WIDTH,LEVEL of 8-bit display images (default 1500,-600).",
            metavar="W,L",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="auto, density or learned.", metavar="METHOD")
    ] = "auto",
    reason: Annotated[
        str | None, typer.Option(help="Why (recorded in the audit log).", metavar="TEXT")
    ] = None,
) -> None:
    """Quantify scans and store them in the study (imaging study + CT result, audited)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from celltrial.imaging.records import (
        measure_scans,
        parse_scan_name,
        parse_scan_time,
        store_ct_results,
        study_views_dir,
    )
    from celltrial.store.database import current_user
    from celltrial.study import open_study

    study = open_study(directory)
    zone = study.protocol.study.zone
    subjects, times = [], []
    for scan in scans:
        if not scan.exists():
            raise CelltrialError(f"{scan}: no such file or folder")
        named = parse_scan_name(scan)
        code = subject or (named[0] if named else None)
        text = when or (named[1] if named else None)
        if code is None or text is None:
            raise CelltrialError(
                f"{scan}: give --subject and --date, or name the file <SUBJECT>_<YYYY-MM-DD>"
            )
        subjects.append(code)
        times.append(parse_scan_time(text, zone=zone))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("CT scans", total=len(scans))
        records = measure_scans(
            scans,
            method=method,
            window=_parse_window(window),
            workers=workers,
            scheduler=scheduler,
            on_done=lambda _record: progress.advance(task),
            views_dir=study_views_dir(study.directory),
        )
    store_ct_results(
        study.engine,
        study.study_id,
        records,
        subjects=subjects,
        times=times,
        user=current_user(),
        reason=reason,
    )
    for record, code, moment in zip(records, subjects, times, strict=True):
        r = record.result
        console.print(
            f"{code} {moment:%Y-%m-%d}: lungs {r['lung_volume_ml']:.0f} mL, lesions "
            f"{r['lesion_volume_ml']:.1f} mL ({r['involvement_pct']:.1f} %), score "
            f"{r['score']}/30 ← {record.path}"
        )
    console.print(f"{len(records)} scan(s) stored in {directory}")


__all__ = ["app"]
