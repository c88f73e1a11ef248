"""``celltrial ct …`` commands (a Typer sub-app; the main CLI registers it as ``ct``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from celltrial.errors import CelltrialError

app = typer.Typer(
    name="ct", help="Chest CT: lungs, lesions, scores.", no_args_is_help=True, add_completion=False
)
console = Console()


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
def segment(
    images: Annotated[list[Path], typer.Argument(help="CT inputs: DICOM folders, NIfTI, NRRD…")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (one sub-folder per input).")],
    window: Annotated[
        str | None,
        typer.Option("--window", help="WIDTH,LEVEL of 8-bit display images (default 1500,-600)."),
    ] = None,
    method: Annotated[str, typer.Option(help="auto, density or learned.")] = "auto",
    overlay: Annotated[bool, typer.Option(help="Also write overlay.png.")] = True,
) -> None:
    """Segment lungs and lesions; write lungs.nii.gz, lesions.nii.gz and result.json per input."""
    from celltrial.imaging.overlays import render_overlays
    from celltrial.imaging.scan import input_stem, measure_scan, write_scan_result

    try:
        parsed = _parse_window(window)
        for image in images:
            result = measure_scan(image, method=method, window=parsed)
            folder = write_scan_result(result, out / input_stem(image))
            if overlay:
                render_overlays([result], folder / "overlay.png")
            q = result.quantification
            console.print(
                f"{image}: lungs {q.lung_ml:.0f} mL, ground-glass {q.ground_glass_ml:.1f} mL, "
                f"consolidation {q.consolidation_ml:.1f} mL, {q.involvement_pct:.1f} % involved, "
                f"score {q.score}/30 → {folder}"
            )
            for caveat in q.caveats:
                console.print(f"  note: {caveat}")
    except CelltrialError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


__all__ = ["app"]
