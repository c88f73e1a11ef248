"""Assemble the study report (self-contained HTML) from a study's data and analyses."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from celltrial import __version__
from celltrial.errors import CelltrialError
from celltrial.labels import assessment_label, name_codes, plain_words, value_label
from celltrial.overview import StudyOverview, summarize_study
from celltrial.protocol import Protocol
from celltrial.protocol.release import check_lot_release
from celltrial.report.flow import compute_flow, render_flow_svg
from celltrial.report.pdf import prepare_pdf, write_pdf
from celltrial.report.sections import ReportContext, SectionProcess, build_sections
from celltrial.report.tables import LISTINGS_SUFFIX, TableCounter, render_table, status_badge
from celltrial.report.times import report_time, zone_note
from celltrial.store.database import schema_revision
from celltrial.store.frames import read_import_batches
from celltrial.store.provenance import SIMULATION_KIND, read_data_cutoff, study_is_simulated
from celltrial.store.unreadable_times import unreadable_time_notes
from celltrial.study import StudyFrames, StudyHandle, read_study_frames

PACKAGES = ("numpy", "pandas", "scipy", "SQLAlchemy", "pydantic", "Jinja2")

#: Shown on the title and on every page of a report whose data came (even in part) from the
#: simulator: a forwarded PDF must not pass for the results of a real study.
SIMULATED_BANNER = "SIMULATED DATA — not results of a real study"


REPORT_FORMATS = ("html", "pdf", "both")
#: The stages of writing a report, in order, for progress display.
REPORT_STEPS = (
    "read study data",
    "summarise schedule and deviations",
    "analyse and draw (safety, efficacy, CT, external, profiles)",
    "write HTML",
    "write PDF",
)
#: Subject profiles are drawn in the report's body up to this many subjects, else in the
#: listings file (up to :data:`celltrial.report.profiles.MAX_PROFILES`).
PROFILES_IN_BODY = 12
#: A hyphen where no line may break (U+2011): "HLA-DR" never "HLA- / DR".
NON_BREAKING_HYPHEN = "\u2011"
#: The visit matrix (a row of badges and missed tests per subject, several lines tall) stays in
#: the body up to this many subjects (30 took three and a half pages).
VISIT_MATRIX_MAX_ROWS = 20


def write_report(
    study: StudyHandle,
    *,
    out: str | Path | None = None,
    report_format: str = "html",
    frames: StudyFrames | None = None,
    overview: StudyOverview | None = None,
    today: pd.Timestamp | None = None,
    on_step: Callable[[str], None] = lambda _step: None,
    section_process: SectionProcess | None = None,
) -> list[Path]:
    """Write the report as HTML, PDF or both; returns the paths written (the report first, then
    its listings file when long listings went there).

    ``out`` is a file ending in .html or .pdf (the suffix is set per format) or else a
    directory; by default ``report.html``/``report.pdf`` in the study directory. The data
    cut-off printed is the time of the study data's last change, so that two runs on the same
    data say the same; visit statuses are as of ``today`` (default: now). ``on_step`` is called
    with each of :data:`REPORT_STEPS` before it starts (the PDF step only when a PDF is written).
    ``section_process``: a :class:`SectionProcess` started earlier builds the analyses' sections.
    """
    if report_format not in REPORT_FORMATS:
        raise CelltrialError(
            f"unknown report format {report_format!r}; choose one of {', '.join(REPORT_FORMATS)}"
        )
    base = Path(out) if out else study.directory / "report.html"
    if base.suffix.lower() not in (".html", ".htm", ".pdf"):  # a directory
        base = base / "report.html"
    listings = base.with_name(f"{base.stem}{LISTINGS_SUFFIX}.html")
    on_step(REPORT_STEPS[0])
    frames = frames or read_study_frames(study)
    on_step(REPORT_STEPS[1])
    if overview is None:
        overview = summarize_study(study.protocol, frames, today=today)
    on_step(REPORT_STEPS[2])
    html, listings_html = render_report_documents(
        study,
        frames,
        overview,
        listings_file=listings.name,
        section_process=section_process,
        # WeasyPrint is made ready while other processes build the sections
        meanwhile=prepare_pdf if report_format in ("pdf", "both") else None,
    )
    on_step(REPORT_STEPS[3])
    written = []
    if report_format in ("html", "both"):
        path = base.with_suffix(".html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        written.append(path)
    if report_format in ("pdf", "both"):
        on_step(REPORT_STEPS[4])
        written.append(write_pdf(html, base.with_suffix(".pdf")))
    if listings_html is not None:
        listings.parent.mkdir(parents=True, exist_ok=True)
        listings.write_text(listings_html, encoding="utf-8")
        written.append(listings)
    else:
        listings.unlink(missing_ok=True)  # an older, longer study's listings would mislead
    return written


def render_report_html(study: StudyHandle, frames: StudyFrames, overview: StudyOverview) -> str:
    """The whole report as one self-contained HTML document, listings included (no external
    resources, no listings file)."""
    return render_report_documents(study, frames, overview, listings_file=None)[0]


def data_cutoff(study: StudyHandle, overview: StudyOverview) -> pd.Timestamp:
    """The report's data cut-off: the study data's last change (two runs on unchanged data state
    the same), or the overview's time when that is earlier or the study holds no data yet.

    Visit statuses stay as of the overview's time (the run): a window that closed after the
    last data entry with nothing entered is missed, not due."""
    last_change = read_data_cutoff(study.engine)
    if last_change is None:
        return overview.today
    return min(last_change, pd.Timestamp(overview.today))


def render_report_documents(
    study: StudyHandle,
    frames: StudyFrames,
    overview: StudyOverview,
    *,
    listings_file: str | None,
    section_process: SectionProcess | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[str, str | None]:
    """The report's body and, when ``listings_file`` names one and long listings went there, the
    listings document (both self-contained HTML). ``section_process``: see :func:`write_report`;
    ``meanwhile`` is called while other processes build the sections (not in a serial run).
    """
    protocol = study.protocol
    zone = protocol.study.timezone
    n_subjects = len(frames.subjects)
    context = ReportContext(
        study=study,
        frames=frames,
        overview=overview,
        tables=TableCounter(listings_file=listings_file),
        profiles="body" if n_subjects <= PROFILES_IN_BODY or not listings_file else "listings",
    )
    counter = context.tables
    flow = compute_flow(overview, follow_up_days=protocol.follow_up_days)
    figures = context.figures
    flow_figure = Markup(
        f"<figure>{render_flow_svg(flow, follow_up_days=protocol.follow_up_days)}"
        f"<figcaption>Figure {figures.next()}. Participant flow.</figcaption></figure>"
    )
    tables = {
        "schedule": _schedule_table(protocol, counter),
        "baseline": _baseline_table(frames.subjects, counter),
        "subjects": _subjects_table(overview, counter),
        "lots": _lots_table(protocol, frames, counter),
        "infusions": _infusion_table(overview, frames, counter, zone=zone),
        "visits": _visit_table(overview, counter),
    }
    deviations = overview.deviations
    if len(deviations):
        counts = (
            deviations.groupby(["category", "kind"]).agg(
                deviations=("kind", "size"), subjects=("subject_id", "nunique")
            )
        ).reset_index()
        counts["kind"] = counts["kind"].map(value_label)
        tables["deviation_counts"] = render_table(
            counts, caption="Protocol deviations by kind.", counter=counter
        )
        tables["deviations"] = render_table(
            deviations.assign(
                kind=deviations["kind"].map(value_label),
                what=deviations["what"].map(name_codes),
                detail=deviations["detail"].map(name_codes),
            ).rename(columns={"subject_id": "subject", "study_day": "day"})[
                ["subject", "day", "kind", "what", "detail"]
            ],
            caption="Listing of protocol deviations.",
            counter=counter,
            listing=True,
        )
    # numbered after the core tables
    if section_process is not None:
        extra_sections = section_process.build(context, meanwhile=meanwhile)
    else:
        extra_sections = build_sections(context, meanwhile=meanwhile)
    tables["completeness"] = _missing_assessments_table(overview, counter)
    batches = read_import_batches(study.engine)
    tables["validation"] = _validation_table(batches, counter)
    tables["batches"] = render_table(
        batches.assign(
            time=[report_time(t, zone) for t in batches["time"]],
            source=[
                _source_text(kind, source, report)
                for kind, source, report in zip(
                    batches["kind"], batches["source"], batches["report"], strict=True
                )
            ],
            counts=batches["counts"].map(_counts_text),
            source_sha256=batches["source_sha256"].map(
                lambda h: f"{h[:12]}…" if isinstance(h, str) and h else "—"  # none for a folder
            ),
        )[["id", "time", "user", "kind", "source", "source_sha256", "counts"]],
        caption="Data loads (import batches) recorded in the audit log.",
        counter=counter,
    )
    sections = [
        {"id": "protocol", "title": "Study and protocol"},
        {"id": "cohort", "title": "Participants"},
        {"id": "exposure", "title": "Exposure"},
        {"id": "visits", "title": "Visits and assessments"},
        {"id": "deviations", "title": "Protocol deviations"},
        *({"id": s.id, "title": s.title} for s in extra_sections),
        {"id": "data-quality", "title": "Data quality"},
        {"id": "methods", "title": "Methods and provenance"},
    ]
    env = Environment(
        loader=PackageLoader("celltrial.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    template = env.get_template("report.html.j2")
    css = Markup(files("celltrial.report").joinpath("templates/report.css").read_text("utf-8"))
    generated = report_time(datetime.now(UTC), zone)
    simulated = study_is_simulated(study.engine)
    cutoff = report_time(data_cutoff(study, overview), zone)
    revision = schema_revision(study.engine) or "none"
    footer = (
        f"{protocol.study.id} · data cut-off {cutoff} ({zone}) · database revision {revision} · "
        f"celltrial {__version__}"
    )
    page = page_css(footer=footer, banner=SIMULATED_BANNER if simulated else None)
    body = template.render(
        protocol=protocol,
        css=css,
        page_css=page,
        simulated_banner=SIMULATED_BANNER if simulated else None,
        zone_note=zone_note(zone, at=overview.today),
        today=cutoff,
        generated=generated,
        listings_file=listings_file if counter.listings else None,
        revision=revision,
        version=__version__,
        sections=sections,
        regimen_text=regimen_text(protocol),
        release_text=release_text(protocol),
        flow_text=flow_text(overview),
        flow_figure=flow_figure,
        tables=tables,
        n=overview.n,
        n_deviations=len(deviations),
        n_subjects_with_deviations=deviations["subject_id"].nunique(),
        extra_sections=extra_sections,
        # read last: every read of the report is done, so every unreadable time was met
        unreadable_times=unreadable_time_notes(study.engine),
        methods=[
            plain_words(name_codes(m))
            for m in (overview.method, *(m for s in extra_sections for m in s.methods))
        ],
        protocol_sha=hashlib.sha256((study.directory / "protocol.yaml").read_bytes()).hexdigest()[
            :16
        ],
        database=study.engine.url.render_as_string(hide_password=True),
        versions=_versions(),
        seeds="; ".join(
            _source_text(kind, source, report)
            for kind, source, report in zip(
                batches["kind"], batches["source"], batches["report"], strict=True
            )
            if kind == SIMULATION_KIND
        ),
        inputs="; ".join(
            f"{source}: {digest}"
            for kind, source, digest in zip(
                batches["kind"], batches["source"], batches["source_sha256"], strict=True
            )
            if kind != SIMULATION_KIND and digest
        ),
    )
    if not counter.listings:
        return body, None
    listings = env.get_template("listings.html.j2").render(
        protocol=protocol,
        css=css,
        page_css=page,
        simulated_banner=SIMULATED_BANNER if simulated else None,
        zone_note=zone_note(zone, at=overview.today),
        today=cutoff,
        generated=generated,
        version=__version__,
        revision=revision,
        listings=counter.listings,
    )
    return body, listings


def page_css(*, footer: str, banner: str | None) -> Markup:
    """The paged-media rules that carry text: every page's footer (study, data cut-off, database
    revision, celltrial version) and, for simulated data, the banner at the top of every page."""
    rules = [f"@bottom-left {{ content: {_css_string(footer)}; }}"]
    if banner:
        rules.append(
            f"@top-center {{ content: {_css_string(banner)}; color: #9b0020; font-size: 9pt; "
            "font-weight: bold; letter-spacing: .04em; }"
        )
    return Markup("@page { " + " ".join(rules) + " }")


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal that cannot end the string or the style element."""
    escaped = "".join(c if c.isalnum() or c in " ·—:.-()+/" else f"\\{ord(c):x} " for c in text)
    return f'"{escaped}"'


def _source_text(kind: str, source: str, report: object) -> str:
    """Where a load came from, in words: a simulation as its size and seed, a file by its name."""
    if kind == SIMULATION_KIND:
        details = report if isinstance(report, dict) else {}
        size = f"{details['subjects']} subjects" if "subjects" in details else "subjects"
        seed = f", random seed {details['seed']}" if "seed" in details else ""
        return f"simulated cohort ({size}{seed})"
    return str(source)


def regimen_text(protocol: Protocol) -> str:
    """The regimen in one sentence."""
    regimen = protocol.regimen
    dose = f"{format_cells(regimen.dose.cells)} cells" + (
        " per kg" if regimen.dose.basis == "per_kg" else " per infusion"
    )
    days = ", ".join(str(d) for d in regimen.infusion_days)
    return (
        f"{regimen.n_infusions} {regimen.route} infusions of {dose} "
        f"(±{regimen.dose.tolerance_pct:g} %), one every {regimen.interval_days} days "
        f"(study days {days}), each over about {regimen.infusion_duration_min:g} min; an infusion "
        f"may be given up to {regimen.infusion_window.early_days} day(s) early and "
        f"{regimen.infusion_window.late_days} day(s) late."
    )


def format_cells(cells: float) -> str:
    """A cell count in scientific notation as clinicians write it: 3 × 10^7."""
    exponent = len(str(int(abs(cells)))) - 1 if cells >= 1 else 0
    mantissa = cells / 10**exponent
    superscript = str(exponent).translate(str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"))
    return f"{mantissa:.3g} × 10{superscript}"


def release_text(protocol: Protocol) -> str:
    """The lot release criteria in one sentence."""
    release = protocol.product.release
    positive = ", ".join(f"{m} ≥ {v:g} %" for m, v in release.positive_markers_min_pct.items())
    negative = ", ".join(f"{m} ≤ {v:g} %" for m, v in release.negative_markers_max_pct.items())
    return (
        f"viability ≥ {release.viability_min_pct:g} %; {positive}; {negative}; sterility "
        f"{release.sterility}; mycoplasma {release.mycoplasma}; endotoxin ≤ "
        f"{release.endotoxin_max_eu_per_kg_per_h:g} EU/kg/h."
    )


def flow_text(overview: StudyOverview) -> str:
    """Participant flow in words: enrolled, infusions received, outcome."""
    given = overview.infusions[overview.infusions["actual_day"].notna()]
    per_number = given.groupby("number")["subject_id"].nunique()
    received = "; ".join(f"infusion {k}: {v}" for k, v in per_number.items())
    outcomes = overview.summary["outcome"].value_counts()
    outcome_text = ", ".join(f"{v} {k}" for k, v in outcomes.items())
    return (
        f"{overview.n} subjects enrolled and treated. Subjects receiving each infusion — "
        f"{received or 'none yet'}. Status at data cut-off: {outcome_text or 'no subjects'}."
    )


def _schedule_table(protocol: Protocol, counter: TableCounter) -> Markup:
    """The visits and what each assesses; a full panel is named once, in the caption, so the
    table stays a table (test names are long: "CD16+CD56+ NK cells (absolute)")."""
    labs = list(dict.fromkeys(t for v in protocol.visits for t in v.labs))
    vitals = list(dict.fromkeys(t for v in protocol.visits for t in v.vitals))

    def listed(codes: tuple[str, ...], panel: list[str], what: str) -> str:
        if len(panel) > 3 and set(codes) == set(panel):
            return f"all {len(panel)} {what}"
        missing = [t for t in panel if t not in codes]
        if len(panel) > 3 and len(missing) < len(codes):
            return "all but " + ", ".join(assessment_label(t) for t in missing)
        return ", ".join(assessment_label(t) for t in codes)

    rows = [
        {
            "visit": v.name,
            "day": v.day,
            "window": f"{v.first_day} to {v.last_day}",
            "labs": listed(v.labs, labs, "laboratory tests"),
            "vital signs": listed(v.vitals, vitals, "vital signs"),
            "WHO scale": "yes" if v.clinical_status else "",
            "chest CT": "yes" if v.chest_ct else "",
        }
        for v in protocol.visits
    ]
    caption = "Assessment schedule (study day 0 = first infusion; windows inclusive)."
    if protocol.daily:
        caption += (
            f" Daily from day {protocol.daily.from_day} to {protocol.daily.to_day} in hospital: "
            f"{', '.join(assessment_label(t) for t in protocol.daily.vitals)}"
            + (" and WHO clinical progression scale." if protocol.daily.clinical_status else ".")
        )
    if len(labs) > 3:
        caption += f" Laboratory tests: {', '.join(assessment_label(t) for t in labs)}."
    if len(vitals) > 3:
        caption += f" Vital signs: {', '.join(assessment_label(t) for t in vitals)}."
    return render_table(pd.DataFrame(rows), caption=caption, counter=counter)


def _baseline_table(subjects: pd.DataFrame, counter: TableCounter) -> Markup:
    def med_range(values: pd.Series, digits: int = 0) -> str:
        values = values.dropna()
        if values.empty:
            return "—"
        return f"{values.median():.{digits}f} ({values.min():.{digits}f}–{values.max():.{digits}f})"

    n = len(subjects)
    male = subjects["sex"] == "M"
    bmi = subjects["weight_kg"] / (subjects["height_cm"] / 100) ** 2
    who = subjects["baseline_who_scale"].value_counts().sort_index()
    rows = [
        {"characteristic": "Subjects, n", "value": str(n)},
        {"characteristic": "Age, years, median (range)", "value": med_range(subjects["age"])},
        {
            "characteristic": "Male sex, n (%)",
            "value": f"{male.sum()} ({100 * male.mean():.0f} %)" if n else "—",
        },
        {
            "characteristic": "Weight, kg, median (range)",
            "value": med_range(subjects["weight_kg"], 1),
        },
        {"characteristic": "BMI, kg/m², median (range)", "value": med_range(bmi, 1)},
        {
            "characteristic": "WHO clinical progression scale at baseline, n",
            "value": ", ".join(f"{int(k)}: {v}" for k, v in who.items()) or "—",
        },
    ]
    return render_table(pd.DataFrame(rows), caption="Baseline characteristics.", counter=counter)


def _subjects_table(overview: StudyOverview, counter: TableCounter) -> Markup:
    summary = overview.summary.rename(
        columns={
            "subject_id": "subject",
            "baseline_who_scale": "WHO at baseline",
            "visits_complete": "visits complete",
        }
    )
    return render_table(summary, caption="Subjects at data cut-off.", counter=counter, listing=True)


def _infusion_table(
    overview: StudyOverview, frames: StudyFrames, counter: TableCounter, *, zone: str
) -> Markup:
    detail = overview.infusions.merge(
        frames.infusions[
            ["subject_id", "number", "planned_time", "start_time", "end_time", "cells_given"]
        ],
        on=["subject_id", "number"],
        how="left",
    ).merge(frames.subjects[["subject_id", "weight_kg"]], on="subject_id", how="left")
    minutes = (detail["end_time"] - detail["start_time"]).dt.total_seconds() / 60
    hours_off = (detail["start_time"] - detail["planned_time"]).dt.total_seconds() / 3600
    table = pd.DataFrame(
        {
            "subject": detail["subject_id"],
            "infusion": detail["number"],
            "planned day": detail["planned_day"],
            "actual day": detail["actual_day"],
            "status": [status_badge(s) for s in detail["status"]],
            "hours vs planned time": hours_off,
            "minutes": minutes,
            "lot": detail["lot_id"],
            "cells (×10⁷)": detail["cells_given"] / 1e7,
            "cells/kg (×10⁵)": detail["cells_given"] / detail["weight_kg"] / 1e5,
            "start": [report_time(t, zone) for t in detail["start_time"]],
        }
    )

    def fixed(digits: int):
        return lambda v: "—" if pd.isna(v) else f"{v:.{digits}f}"

    return render_table(
        table,
        caption="Infusions: planned and actual study day and time, duration, lot and cells given "
        "(in total and per kg of body weight).",
        counter=counter,
        formats={
            "cells (×10⁷)": fixed(2),
            "cells/kg (×10⁵)": fixed(2),
            "hours vs planned time": _signed_hours,
            "minutes": fixed(0),
            "actual day": lambda v: "—" if pd.isna(v) else str(int(v)),
        },
        raw_html=frozenset({"status"}),
        listing=True,
    )


def _signed_hours(value: float) -> str:
    """Hours early (−) or late (+) to one decimal; "0.0" rather than "-0.0" or "+0.0"."""
    if pd.isna(value):
        return "—"
    return "0.0" if round(value, 1) == 0 else f"{value:+.1f}".replace("-", "−")


def _marker_values(markers: dict[str, float], names: Iterable[str]) -> str:
    """A lot's marker results, each on one line with its value ("CD73 97.8", "HLA-DR 0.81":
    a no-break space and a non-breaking hyphen), so that lines break only between markers."""
    return ", ".join(
        f"{name.replace('-', NON_BREAKING_HYPHEN)}\u00a0{markers[name]:g}"
        for name in names
        if name in markers
    )


def _lots_table(protocol: Protocol, frames: StudyFrames, counter: TableCounter) -> Markup:
    lots = frames.lots
    if lots.empty:
        return Markup("<p>No product lots recorded.</p>")
    used = frames.infusions.groupby("lot_id").size()
    release = protocol.product.release
    rows = []
    for lot in lots.to_dict("records"):
        failures = check_lot_release(lot, release)
        markers = lot.get("markers_pct") or {}
        rows.append(
            {
                "lot": lot["lot_id"],
                "donor": lot.get("donor_id") or "—",
                "status": status_badge(
                    "done" if lot["release_status"] == "released" else "missed",
                    lot["release_status"],
                ),
                "viability %": lot.get("viability_pct"),
                "positive markers %": _marker_values(markers, release.positive_markers_min_pct),
                "negative markers %": _marker_values(markers, release.negative_markers_max_pct),
                "sterility": lot.get("sterility") or "—",
                "mycoplasma": lot.get("mycoplasma") or "—",
                "endotoxin EU/mL": lot.get("endotoxin_eu_per_ml"),
                "criteria met": "yes" if not failures else "no: " + "; ".join(failures),
                "infusions": int(used.get(lot["lot_id"], 0)),
            }
        )
    return render_table(
        pd.DataFrame(rows),
        caption="Cell-product lots: release status, quality-control results and whether the "
        "protocol's release criteria (ISCT markers, viability, sterility, mycoplasma) are met.",
        counter=counter,
        raw_html=frozenset({"status"}),
        listing=True,
    )


def _validation_table(batches: pd.DataFrame, counter: TableCounter) -> Markup:
    """Warnings and errors of each import's validation report, by kind (details in its CSV)."""
    rows = [
        {
            "batch": batch_id,
            "source": Path(str(source)).name,
            "severity": item.get("severity", ""),
            "kind": str(item.get("kind", "")).replace("_", " "),
            "count": int(item.get("count", 0)),
        }
        for batch_id, source, report in zip(
            batches["id"], batches["source"], batches["report"], strict=True
        )
        if isinstance(report, dict)
        for item in report.get("by_kind", [])
    ]
    if not rows:
        return Markup("<p>No validation warnings were raised by the data loads.</p>")
    return render_table(
        pd.DataFrame(rows),
        caption="Validation messages of each import, by kind (every message with its file, row, "
        "column and value is in the import's report CSV under imports/).",
        counter=counter,
    )


def _missing_assessments_table(overview: StudyOverview, counter: TableCounter) -> Markup:
    assessments = overview.visit_assessments
    if assessments.empty:
        return Markup("<p>No assessments expected yet.</p>")
    counts = (
        assessments.assign(n=1)
        .pivot_table(index="assessment", columns="status", values="n", aggfunc="sum", fill_value=0)
        .reset_index()
    )
    counts["assessment"] = [
        label[:1].upper() + label[1:] for label in counts["assessment"].map(assessment_label)
    ]
    counts = counts.sort_values("assessment", key=lambda s: s.str.casefold())
    ordered = [
        c
        for c in ("done", "out_of_window", "missed", "due", "upcoming", "not_expected")
        if c in counts.columns
    ]
    counts = counts[["assessment", *ordered]]
    counts.columns = ["assessment", *(c.replace("_", " ") for c in ordered)]
    return render_table(
        counts,
        caption="Data completeness: planned visit assessments by status, over all subjects.",
        counter=counter,
    )


def _visit_table(overview: StudyOverview, counter: TableCounter) -> Markup:
    visits = overview.visits
    if visits.empty:
        return Markup("<p>No treated subjects yet.</p>")
    order = visits.drop_duplicates("visit_index").sort_values("visit_index")["visit"].tolist()
    cells = visits.assign(
        cell=[
            status_badge(s) + (f"<br><small>{escape(name_codes(n))}</small>" if n else "")
            for s, n in zip(visits["status"], visits["not_done"], strict=True)
        ]
    )
    matrix = cells.pivot(index="subject_id", columns="visit", values="cell")[order]
    matrix = matrix.reset_index().rename(columns={"subject_id": "subject"})
    return render_table(
        matrix,
        caption="Visit status per subject (assessments not done in window listed).",
        counter=counter,
        raw_html=frozenset(order),
        listing=True,
        listing_max_rows=VISIT_MATRIX_MAX_ROWS,
    )


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{table.replace('_', ' ')}: {n}" for table, n in (counts or {}).items())


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for package in PACKAGES:
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)
