"""Individual subject profiles: one figure per subject with infusions, AEs, markers and status."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from markupsafe import Markup, escape
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from celltrial.labels import assessment_label, display_unit
from celltrial.report.figures import PALETTE, figure_png, render_png
from celltrial.report.sections import ReportContext, Section

#: Marker panels of a profile: (title, [(test, colour index)], log axis).
PANELS = (
    ("Inflammation", (("CRP", 0), ("IL6", 1)), True),
    ("Coagulation", (("DDIMER", 3),), True),
    ("Immune cells", (("LYM", 2), ("NEUT", 4)), True),
)
PROFILE_DPI = 72
#: Profile figure size and its margins (left, right, top, bottom) in inches.
PROFILE_SIZE_IN = (8.0, 4.6)
PROFILE_MARGINS_IN = (0.45, 0.15, 0.45, 0.45)
#: Largest number of subjects given a profile page (the rest are listed in the text).
MAX_PROFILES = 100


def build_profiles_section(context: ReportContext) -> Section | None:
    """One profile figure per subject (up to :data:`MAX_PROFILES`)."""
    frames = context.frames
    subjects = frames.subjects["subject_id"].tolist()
    if not subjects:
        return None
    if context.profiles == "none":
        return None
    shown = subjects[:MAX_PROFILES]
    in_listings = context.profiles == "listings"
    parts = []
    obs = frames.observations
    by_subject = {code: rows for code, rows in obs.groupby("subject_id")}
    status = {code: rows for code, rows in frames.clinical_status.groupby("subject_id")}
    infusions = {code: rows for code, rows in frames.infusions.groupby("subject_id")}
    events = {code: rows for code, rows in frames.adverse_events.groupby("subject_id")}
    empty = pd.DataFrame()
    jobs = [
        (
            code,
            by_subject.get(code, empty),
            status.get(code, empty),
            infusions.get(code, empty),
            events.get(code, empty),
            context.study.protocol.follow_up_days,
        )
        for code in shown
    ]
    figures = []
    for code, png in zip(shown, _render_all(jobs), strict=True):
        caption = (
            f"Subject {code}: infusions, adverse events, markers and clinical status by study day."
        )
        counter = None if in_listings else context.figures  # the listings' are not numbered
        figures.append(
            Markup('<div class="profile">')
            + render_png(png, caption=caption, counter=counter)
            + Markup("</div>")
        )
    more = (
        f" Profiles of the first {len(shown)} of {len(subjects)} subjects (by subject code)."
        if len(subjects) > len(shown)
        else ""
    )
    if in_listings:
        context.tables.listings.append(
            Markup('<h2 id="profiles">Individual subject profiles</h2><p>')
            + more.strip()
            + Markup("</p>")
            + Markup("").join(figures)
        )
        parts.append(
            Markup("<p>")
            + f"The profiles of {len(shown)} subjects (infusions, adverse events, markers and "
            f"clinical status by study day) are in the listings file, "
            + Markup(f'<a href="{escape(context.tables.listings_file or "")}#profiles">')
            + (context.tables.listings_file or "")
            + Markup("</a>.")
            + more
            + Markup("</p>")
        )
    else:
        if more:
            parts.append(Markup("<p>") + more.strip() + Markup("</p>"))
        parts += figures
    return Section(
        id="profiles",
        title="Individual subject profiles",
        html=Markup("").join(parts),
        methods=(
            "Subject profiles plot every recorded value by study day (day 0 = first infusion); "
            "infusions are dashed vertical lines, adverse events triangles labelled with their "
            "grade.",
        ),
    )


def profile_png(
    code: str,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    infusions: pd.DataFrame,
    adverse_events: pd.DataFrame,
    *,
    follow_up_days: int,
    dpi: int = PROFILE_DPI,
) -> bytes:
    """The subject's profile (:func:`render_subject_profile`) as PNG bytes (drawn once: fixed
    margins need no tight bounding box). A plain function of picklable data, so that it can run
    in another process."""
    with _DRAWING:  # the figure is the process's one template until it is written
        figure = render_subject_profile(
            code,
            observations,
            clinical_status,
            infusions,
            adverse_events,
            follow_up_days=follow_up_days,
        )
        return figure_png(figure, dpi=dpi, tight=False)


def _profile_png(job: tuple) -> bytes:
    code, observations, status, infusions, events, follow_up_days = job
    return profile_png(code, observations, status, infusions, events, follow_up_days=follow_up_days)


def _render_all(jobs: list[tuple]) -> list[bytes]:
    """Render profile PNGs, on every core when there are many (fork: frames are not re-read)."""
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < 16 or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [_profile_png(job) for job in jobs]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_profile_png, jobs, chunksize=4))


def render_subject_profile(
    code: str,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    infusions: pd.DataFrame,
    adverse_events: pd.DataFrame,
    *,
    follow_up_days: int,
) -> Figure:
    """Three rows of two panels sharing study days: WHO scale and SpO2/FiO2, then the marker
    panels. Two profiles fit a printed page.

    The panels, titles and axes are made once per process (:func:`_template`) and each subject's
    data drawn into them: making six axes with their ticks cost more than drawing the data.
    The figure returned is therefore the same object on the next call: render it before that.
    """
    figure, axes = _template(follow_up_days)
    for axis in axes[:5]:
        for artist in [*axis.lines, *axis.collections, *axis.texts]:
            artist.remove()
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    figure.texts[0].set_text(f"Subject {code}")
    status_axis, oxygen = axes[0], axes[1]
    infusion_days = _days(infusions, "study_day")
    by_test = _by_test(observations)
    if len(clinical_status):
        status_axis.step(
            clinical_status["study_day"],
            clinical_status["who_scale"],
            where="post",
            color=PALETTE[7],
            linewidth=1.2,
        )
    spo2 = _series(by_test, "SPO2")
    fio2 = _series(by_test, "FIO2")
    if len(spo2) and len(fio2):
        ratio = _nearest_ratio(spo2, fio2)
        oxygen.plot(ratio["x"], ratio["y"], ".", color=PALETTE[5], markersize=3)
    for axis, (_title, tests, _log) in zip(axes[2:5], PANELS, strict=True):
        for test, colour in tests:
            series = _series(by_test, test)
            if len(series):
                axis.plot(
                    series["x"],
                    series["y"],
                    "o-",
                    color=PALETTE[colour],
                    markersize=2.5,
                    linewidth=1.1,
                    label=_label(series, test),
                )
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper right", fontsize=6.5, frameon=False, handlelength=1.5)
    if infusion_days:
        for axis in axes[:5]:  # one collection per panel, not a line per infusion
            axis.vlines(
                infusion_days,
                0,
                1,
                transform=axis.get_xaxis_transform(),
                colors="#555",
                linestyles="--",
                linewidths=0.7,
            )
    # an AE without a study day (no infusion yet: no day 0) has no place on the day axis
    placed = adverse_events[adverse_events["onset_day"].notna()] if len(adverse_events) else []
    if len(placed):
        days = _days(placed, "onset_day")
        grades = placed["grade"].tolist()
        status_axis.scatter(days, [10.4] * len(days), marker="v", color=PALETTE[3], zorder=5)
        for day, grade in zip(days, grades, strict=True):
            label = "AE" if pd.isna(grade) else f"G{int(grade)}"
            status_axis.annotate(
                label,
                (day, 10.4),
                textcoords="offset points",
                xytext=(0, -11),
                ha="center",
                fontsize=6.5,
                color=PALETTE[3],
            )
    for axis, empty_limits in zip(axes[1:5], _EMPTY_LIMITS[follow_up_days], strict=True):
        # the WHO panel keeps its fixed 0–10 scale; a panel without data gets the template's
        # own scale, never the one the previous subject's data left (the picture must not
        # depend on which subject was drawn before)
        axis.relim()
        if np.isfinite(axis.dataLim.y0):  # any data (a null box is infinite)
            axis.autoscale_view(scalex=False)
        else:
            axis.set_ylim(empty_limits, auto=None)
    return figure


#: The profile figure of this process, by follow-up days (see :func:`render_subject_profile`).
_TEMPLATES: dict[int, tuple[Figure, list[Axes]]] = {}
#: The y range of each data panel of a template before any data, by follow-up days.
_EMPTY_LIMITS: dict[int, list[tuple[float, float]]] = {}
#: One figure per process is drawn into: threads (web requests) draw it one at a time.
_DRAWING = threading.Lock()


def _new_drawing_lock() -> None:
    """In a forked child: a lock of its own (the parent's may have been held by another thread
    at the fork, and no thread of the child would ever release it)."""
    global _DRAWING
    _DRAWING = threading.Lock()


os.register_at_fork(after_in_child=_new_drawing_lock)


def _template(follow_up_days: int) -> tuple[Figure, list[Axes]]:
    """The profile's empty figure: panels, titles, scales, ticks and the key, made once."""
    if follow_up_days in _TEMPLATES:
        return _TEMPLATES[follow_up_days]
    width, height = PROFILE_SIZE_IN
    figure = Figure(figsize=PROFILE_SIZE_IN)
    # fixed margins (inches) for the tick and axis labels: an automatic layout engine measures
    # every tick label of every panel and costs more than drawing the figure
    left, right, top, bottom = PROFILE_MARGINS_IN
    grid = figure.subplots(
        3,
        2,
        sharex=True,
        gridspec_kw={
            "left": left / width,
            "right": 1 - right / width,
            "top": 1 - top / height,
            "bottom": bottom / height,
            "hspace": 0.28,
            "wspace": 0.22,
        },
    )
    axes = list(grid.ravel())
    figure.text(left / width, 0.995, "", ha="left", va="top", fontsize=10, fontweight="bold")
    # the WHO scale is whole numbers from 0 to 10: ticks on whole steps only
    axes[0].set_ylim(-0.5, 10.9)
    axes[0].set_yticks(range(0, 11, 2))
    # titles at a fixed height: placing them automatically measures every tick label of the
    # shared axes at every draw
    axes[0].set_title("WHO clinical progression scale", loc="left", fontsize=8, y=1.0, pad=3)
    axes[1].set_title("SpO₂/FiO₂ ratio", loc="left", fontsize=8, y=1.0, pad=3)
    for axis, (title, _tests, log) in zip(axes[2:5], PANELS, strict=True):
        if log:
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            axis.yaxis.set_minor_locator(NullLocator())  # minor ticks: thousands of objects
        axis.set_title(title, loc="left", fontsize=8, y=1.0, pad=3)
    for axis in axes[:5]:
        axis.grid(alpha=0.25)
        axis.tick_params(labelsize=7)
    axes[0].set_xlim(-3, follow_up_days + 1)
    axes[3].xaxis.set_tick_params(labelbottom=True)
    for axis in axes[3:5]:  # under the lowest panel of each column, at a fixed place
        figure.text(
            0.5,
            -0.3,
            "study day (0 = first infusion)",
            transform=axis.transAxes,
            ha="center",
            va="top",
            fontsize=7,
        )
    axes[5].axis("off")
    axes[5].add_artist(
        Text(
            0.02,
            0.5,
            "dashed lines: infusions\n▼ adverse events (G = CTCAE grade)",
            fontsize=7,
            va="center",
            transform=axes[5].transAxes,
        )
    )
    _EMPTY_LIMITS[follow_up_days] = [axis.get_ylim() for axis in axes[1:5]]
    _TEMPLATES[follow_up_days] = figure, axes
    return figure, axes


def _days(frame: pd.DataFrame, column: str) -> list[float]:
    if frame.empty or column not in frame:
        return []
    return [float(v) for v in frame[column].dropna()]


def _by_test(observations: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The subject's recorded values by test (grouped once: a filter per test costs more)."""
    if observations.empty:
        return {}
    rows = observations[observations["value"].notna()]
    return {str(test): part for test, part in rows.groupby("test", sort=False)}


def _series(by_test: dict[str, pd.DataFrame], test: str) -> pd.DataFrame:
    rows = by_test.get(test)
    if rows is None or rows.empty:
        return pd.DataFrame(columns=["x", "y", "unit"])
    # fractional study day: the calendar day plus the local time of day would need the zone;
    # spread same-day values by their order so repeated readings stay visible
    order = rows.groupby("study_day").cumcount() / 4.0
    return pd.DataFrame(
        {"x": rows["study_day"].astype(float) + order, "y": rows["value"], "unit": rows["unit"]}
    )


def _nearest_ratio(spo2: pd.DataFrame, fio2: pd.DataFrame) -> pd.DataFrame:
    merged = pd.merge_asof(
        spo2.sort_values("x"),
        fio2.sort_values("x")[["x", "y"]],
        on="x",
        direction="nearest",
        tolerance=0.5,
        suffixes=("", "_f"),
    )
    merged = merged.dropna(subset=["y_f"])
    return pd.DataFrame({"x": merged["x"], "y": merged["y"] / merged["y_f"].to_numpy()})


def _label(series: pd.DataFrame, test: str) -> str:
    """The legend entry: the test's name with the unit of its values (×10⁹/L, not 10^9/L)."""
    name = assessment_label(test)
    unit = series["unit"].iloc[0] if len(series) else ""
    return f"{name} ({display_unit(str(unit))})" if unit else name


__all__ = ["build_profiles_section", "render_subject_profile"]
