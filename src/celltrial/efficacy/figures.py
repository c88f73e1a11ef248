"""Efficacy figures (matplotlib, Agg): biomarker panels, small multiples, swimmer plot.

Each ``render_*`` function returns a :class:`matplotlib.figure.Figure` (no pyplot state);
:func:`write_figure` saves it as PNG or SVG by suffix, and the report embeds it inline with
:func:`celltrial.report.figures.render_figure`. Colours are the Okabe–Ito palette (colour-blind
safe); with more subjects than colours every subject is a thin grey line under the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, LogLocator, NullLocator

from celltrial.efficacy.observations import is_log_normal, reference_range
from celltrial.errors import CelltrialError
from celltrial.labels import marker_label

#: Okabe–Ito without yellow (too pale on white) first; yellow last.
SUBJECT_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
MEDIAN_COLOUR = "#000000"
RANGE_COLOUR = "#BBBBBB"
INFUSION_COLOUR = "#555555"
#: Up to this many subjects get their own colour and legend entry.
MAX_COLOURED = len(SUBJECT_COLOURS)
#: The swimmer plot shows at most this many subjects (the first by id).
MAX_SWIMMER_LANES = 40
#: Height (inches) the swimmer's lanes share when there are many subjects (one printed page).
SWIMMER_LANES_IN = 6.0
#: The WHO clinical progression scale's steps as the swimmer's colour bar names them.
WHO_TICK_LABELS = (
    "0 uninfected",
    "1 asymptomatic",
    "2 symptomatic",
    "3 needs assistance",
    "4 hospitalised",
    "5 oxygen by mask",
    "6 high-flow/NIV",
    "7 ventilated",
    "8 ventilated",
    "9 ventilated",
    "10 dead",
)

#: WHO scale colours 0–10: light (well) to dark (ventilated), black for death (cividis, CVD-safe).
WHO_COLOURS = (
    "#FFEA46",
    "#F2DD4B",
    "#DCCB4D",
    "#C3B74F",
    "#A9A459",
    "#8F9267",
    "#757F72",
    "#5D6D79",
    "#3D5C86",
    "#10417A",
    "#000000",
)


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.6, 2, 300), never 6e-01 or 3 × 10⁰."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def infusion_days_of(infusions: pd.DataFrame) -> list[float]:
    """Typical study day of each infusion number (median over subjects of the actual day)."""
    if infusions is None or infusions.empty or "study_day" not in infusions:
        return []
    days = pd.to_numeric(infusions["study_day"], errors="coerce")
    return [float(v) for v in days.groupby(infusions["number"]).median().dropna()]


def write_figure(figure: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Save ``figure`` as PNG or SVG (by the suffix of ``path``); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise CelltrialError(f"figure file must end in .png or .svg, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _subject_colours(subjects: Sequence[str]) -> dict[str, str]:
    if len(subjects) > MAX_COLOURED:
        return {s: "#9A9A9A" for s in subjects}
    return {s: SUBJECT_COLOURS[i] for i, s in enumerate(subjects)}


def _median_line(rows: pd.DataFrame) -> pd.DataFrame:
    """Median per nominal visit (scheduled rows) when visits are known, else per study day."""
    if "visit_day" in rows and rows["visit_day"].notna().any():
        scheduled = rows[rows["visit_day"].notna()]
        if "unscheduled" in scheduled:
            scheduled = scheduled[~scheduled["unscheduled"].astype(bool)]
        grouped = scheduled.groupby("visit_day")["value"]
    else:
        grouped = rows.groupby("_day")["value"]
    table = grouped.agg(["median", "count"]).reset_index()
    table.columns = ["day", "median", "n"]
    return table[table["n"] >= 2]


def draw_biomarker(
    ax: Axes,
    observations: pd.DataFrame,
    *,
    test: str,
    infusion_days: Sequence[float] = (),
    subjects: Sequence[str] | None = None,
    compact: bool = False,
) -> None:
    """Draw one marker on ``ax``: subject lines, median, reference range, infusion days."""
    name, unit = marker_label(test)
    rows = observations[(observations["test"] == test) & observations["value"].notna()].copy()
    rows["_day"] = pd.to_numeric(rows["study_day"], errors="coerce").astype(float)
    rows = rows[rows["_day"].notna()].sort_values(["subject_id", "time"])
    values = rows["value"].to_numpy(float)
    log = is_log_normal(test) and (values > 0).all() and len(values) > 0
    low, high = _reference(rows, test)
    ids = list(subjects) if subjects is not None else sorted(map(str, rows["subject_id"].unique()))
    colours = _subject_colours(ids)
    many = len(ids) > MAX_COLOURED

    if np.isfinite(high) or np.isfinite(low):
        # a range open at 0 (e.g. CRP 0–10) is shaded down to the axis, also on a log axis
        bottom = low if np.isfinite(low) and (low > 0 or not log) else 1e-12
        top = high if np.isfinite(high) else bottom
        ax.axhspan(bottom, top, color=RANGE_COLOUR, alpha=0.35, lw=0)
    for day in infusion_days:
        ax.axvline(day, color=INFUSION_COLOUR, ls=":", lw=1.0, zorder=1)

    segments, seg_colours = [], []
    for subject, group in rows.groupby(rows["subject_id"].astype(str), sort=True):
        xy = np.column_stack([group["_day"].to_numpy(float), group["value"].to_numpy(float)])
        segments.append(xy)
        seg_colours.append(colours.get(subject, "#9A9A9A"))
        if not many:
            ax.plot(xy[:, 0], xy[:, 1], "o", ms=2.5 if compact else 3.5, color=colours[subject])
    ax.add_collection(
        LineCollection(
            segments,
            colors=seg_colours,
            linewidths=0.6 if many else (1.0 if compact else 1.4),
            alpha=0.35 if many else 0.9,
            zorder=2,
        )
    )
    limited = rows[rows.get("qualifier", pd.Series("", index=rows.index)).fillna("").ne("")]
    if len(limited):
        ax.plot(
            limited["_day"],
            limited["value"],
            "^",
            mfc="white",
            mec="#D55E00",
            ms=6,
            zorder=4,
            label="at reporting limit",
        )
    median = _median_line(rows)
    if len(median):
        ax.plot(
            median["day"],
            median["median"],
            "-",
            color=MEDIAN_COLOUR,
            lw=2.6,
            zorder=3,
            solid_capstyle="round",
        )
        ax.plot(median["day"], median["median"], "s", color=MEDIAN_COLOUR, ms=3.5, zorder=3)
    if log:
        ax.set_yscale("log")
        # labelled ticks at 1, 2 and 5 of each decade and no minor ticks: the same values to
        # read as labelled minor ticks, without the hundreds of tick objects they cost to draw
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(
            _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf))
        )
        ax.yaxis.set_minor_locator(NullLocator())
    if len(values) and log:
        known = [v for v in (low, high) if np.isfinite(v) and v > 0]
        ax.set_ylim(min([values.min(), *known]) / 1.5, max([values.max(), *known]) * 1.5)
    elif len(values):
        ax.autoscale_view()
        ax.set_ylim(bottom=min(0.0, float(values.min())))
    if compact:
        # at a fixed height: placing a title automatically measures every tick label
        ax.set_title(f"{name}\n({unit})" if unit else name, fontsize=8.5, y=1.0, pad=4)
        ax.tick_params(which="both", labelsize=7)
    else:
        ax.set_title(name + (" (log scale)" if log else ""), fontsize=11)
        ax.set_ylabel(f"{name} ({unit})" if unit else name)
        ax.set_xlabel("Study day (day 0 = first infusion)")
    ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _reference(rows: pd.DataFrame, test: str) -> tuple[float, float]:
    """The most common lab reference range of the rows, else the catalogue's."""
    low, high = reference_range(test)
    if "ref_low" in rows and rows["ref_low"].notna().any():
        low = float(rows["ref_low"].mode().iloc[0])
    if "ref_high" in rows and rows["ref_high"].notna().any():
        high = float(rows["ref_high"].mode().iloc[0])
    return low, high


def _legend_handles(ids: Sequence[str], *, with_limit: bool) -> list:
    colours = _subject_colours(ids)
    handles: list = []
    if len(ids) <= MAX_COLOURED:
        handles += [
            Line2D([], [], color=colours[s], marker="o", ms=4, lw=1.4, label=s) for s in ids
        ]
    else:
        handles.append(
            Line2D([], [], color="#9A9A9A", lw=0.8, label=f"each of {len(ids)} subjects")
        )
    handles += [
        Line2D([], [], color=MEDIAN_COLOUR, lw=2.6, marker="s", ms=4, label="median per visit"),
        Patch(color=RANGE_COLOUR, alpha=0.35, label="reference range"),
        Line2D([], [], color=INFUSION_COLOUR, ls=":", lw=1.0, label="infusion"),
    ]
    if with_limit:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="^",
                mfc="white",
                mec="#D55E00",
                ms=6,
                label="at reporting limit (true value higher)",
            )
        )
    return handles


def _subjects(observations: pd.DataFrame) -> list[str]:
    return sorted(map(str, observations["subject_id"].dropna().unique()))


def render_biomarker_panel(
    observations: pd.DataFrame, *, test: str, infusion_days: Sequence[float] = ()
) -> Figure:
    """One marker: a line per subject, the median per visit, infusion days, reference range."""
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = figure.add_subplot()
    ids = _subjects(observations)
    draw_biomarker(ax, observations, test=test, infusion_days=infusion_days, subjects=ids)
    rows = observations[observations["test"] == test]
    limited = "qualifier" in rows and rows["qualifier"].fillna("").ne("").any()
    ax.legend(
        handles=_legend_handles(ids, with_limit=bool(limited)),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    return figure


def render_biomarker_overview(
    observations: pd.DataFrame,
    *,
    tests: Sequence[str],
    infusion_days: Sequence[float] = (),
    columns: int = 4,
) -> Figure:
    """Small multiples: one compact panel per marker, shared legend below."""
    tests = [t for t in tests if (observations["test"] == t).any()]
    if not tests:
        raise CelltrialError("none of the requested markers has observations")
    rows_n = int(np.ceil(len(tests) / columns))
    height = 2.5 * rows_n + 0.8
    # fixed margins (in inches) instead of a layout engine: much faster to save
    figure = Figure(figsize=(2.7 * columns, height))
    axes = figure.subplots(rows_n, columns, squeeze=False)
    figure.subplots_adjust(
        left=0.55 / (2.7 * columns),
        right=1 - 0.1 / (2.7 * columns),
        top=1 - 0.45 / height,
        bottom=1.05 / height,
        wspace=0.38,
        hspace=0.5,
    )
    ids = _subjects(observations)
    for ax, test in zip(axes.flat, tests, strict=False):
        draw_biomarker(
            ax, observations, test=test, infusion_days=infusion_days, subjects=ids, compact=True
        )
    for ax in axes.flat[len(tests) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Study day", fontsize=8)
    limited = "qualifier" in observations and (
        observations.loc[observations["test"].isin(tests), "qualifier"].fillna("").ne("").any()
    )
    handles = _legend_handles(ids, with_limit=bool(limited))
    figure.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), 6),
        fontsize=8,
        frameon=False,
    )
    return figure


def render_swimmer(
    status: pd.DataFrame,
    *,
    clinical: pd.DataFrame,
    infusions: pd.DataFrame,
    adverse_events: pd.DataFrame,
    oxygenation: pd.DataFrame | None = None,
    horizon_days: int = 28,
) -> Figure:
    """Per subject: daily WHO scale as coloured lanes, infusions, adverse events, discharge and
    death; below, the daily S/F ratio per subject (when ``oxygenation`` daily values are given).

    ``status`` needs subject_id, study_day and ``who``; ``clinical`` is the per-subject table
    of :class:`~celltrial.efficacy.clinical_status.ClinicalStatusSummary`; ``oxygenation`` the
    ``daily`` table of :class:`~celltrial.efficacy.oxygenation.OxygenationSummary`.
    """
    ids = sorted(map(str, clinical["subject_id"]))[:MAX_SWIMMER_LANES]
    lane = {s: i for i, s in enumerate(reversed(ids))}
    with_oxygen = oxygenation is not None and oxygenation["sf_ratio"].notna().any()
    # lanes narrow as subjects are added so that the figure keeps to one printed page
    lane_in = min(0.42, SWIMMER_LANES_IN / max(len(ids), 1))
    height = lane_in * len(ids) + 1.6
    figure = Figure(figsize=(8.2, height + (2.6 if with_oxygen else 0.0)), layout="constrained")
    if with_oxygen:
        ax, ax2 = figure.subplots(
            2, 1, sharex=True, height_ratios=[height, 2.6], gridspec_kw={"hspace": 0.05}
        )
    else:
        ax, ax2 = figure.add_subplot(), None
    cmap = ListedColormap(WHO_COLOURS)
    norm = BoundaryNorm(np.arange(-0.5, 11.5), cmap.N)
    frame = status.assign(
        subject_id=status["subject_id"].astype(str),
        _day=pd.to_numeric(status["study_day"], errors="coerce").astype(float),
        _who=pd.to_numeric(status["who"], errors="coerce").astype(float),
    )
    frame = frame[frame["subject_id"].isin(ids) & frame["_day"].notna() & frame["_who"].notna()]
    frame = frame[frame["_day"] <= horizon_days].sort_values(["subject_id", "_day"])
    for subject, group in frame.groupby("subject_id"):
        days = group["_day"].to_numpy(float)
        scores = group["_who"].to_numpy(float)
        ends = np.append(days[1:], days[-1] + 1)
        y = lane[subject]
        alive = scores < 10
        ax.broken_barh(  # one collection per subject: fast also for many days
            list(zip(days[alive], (ends - days)[alive], strict=True)),
            (y - 0.25, 0.5),
            facecolors=[cmap(norm(v)) for v in scores[alive]],
            linewidth=0,
        )
        change = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
        for index in change:
            score = scores[index]
            if score >= 10:
                continue
            run_end = ends[change[change > index][0] - 1] if (change > index).any() else ends[-1]
            if run_end - days[index] >= 1.5:
                ax.text(
                    days[index] + 0.25,
                    y,
                    f"{score:g}",
                    va="center",
                    ha="left",
                    fontsize=7,
                    color="white" if score >= 6 else "black",
                    zorder=4,
                )
    table = clinical.assign(subject_id=clinical["subject_id"].astype(str)).set_index("subject_id")
    for subject in ids:
        y = lane[subject]
        if (
            pd.notna(table.loc[subject, "discharge_day"])
            and table.loc[subject, "discharge_day"] <= horizon_days
        ):
            ax.plot(
                table.loc[subject, "discharge_day"],
                y,
                marker="D",
                ms=6,
                mfc="white",
                mec="#009E73",
                mew=1.8,
                ls="",
                zorder=5,
            )
        if (
            pd.notna(table.loc[subject, "death_day"])
            and table.loc[subject, "death_day"] <= horizon_days
        ):
            ax.plot(
                table.loc[subject, "death_day"],
                y,
                marker="X",
                ms=9,
                color="#000000",
                ls="",
                zorder=5,
            )
    given = infusions[infusions["subject_id"].astype(str).isin(ids)]
    ax.plot(
        pd.to_numeric(given["study_day"], errors="coerce").astype(float),
        [lane[str(s)] + 0.4 for s in given["subject_id"]],
        "v",
        color="#0072B2",
        ms=6,
        ls="",
        zorder=5,
    )
    events = adverse_events[adverse_events["subject_id"].astype(str).isin(ids)]
    events = events[pd.to_numeric(events["onset_day"], errors="coerce").notna()]
    events = events[~events["term"].str.contains("death", case=False, na=False)]
    serious = events["serious"].fillna(False).astype(bool)
    for mask, colour, marker in ((~serious, "#E69F00", "o"), (serious, "#D55E00", "*")):
        part = events[mask]
        ax.plot(
            pd.to_numeric(part["onset_day"], errors="coerce").astype(float),
            [lane[str(s)] for s in part["subject_id"]],
            marker,
            color=colour,
            mec="#000000",
            mew=0.5,
            ms=8 if marker == "*" else 5.5,
            ls="",
            zorder=6,
        )
        for item in part.itertuples():
            # on the lane's own centre line, right of its marker and over the bar: set below
            # the lane, a label sat in the next subject's lane once lanes were narrow
            ax.annotate(
                f"G{int(item.grade)}" if pd.notna(item.grade) else "",
                (float(item.onset_day), lane[str(item.subject_id)]),
                xytext=(5, 0),
                textcoords="offset points",
                fontsize=min(7.0, lane_in * 72 * 0.6),
                va="center",
                zorder=7,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    ax.set_yticks(range(len(ids)), list(reversed(ids)), fontsize=7 if len(ids) > 20 else 9)
    ax.set_ylim(-0.7, len(ids) - 0.3)
    ax.set_xlim(min(-2.5, frame["_day"].min() - 0.5 if len(frame) else -2.5), horizon_days + 1.5)
    ax.axvline(0, color=INFUSION_COLOUR, lw=0.8, ls=":")
    ax.set_title("Clinical course per subject (WHO clinical progression scale)", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    scale = figure.colorbar(
        matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        ticks=range(11),
        fraction=0.04,
        pad=0.02,
    )
    # the meaning of each step beside it: a long axis label ran past a short colour bar
    scale.ax.set_yticks(range(11), WHO_TICK_LABELS)
    scale.set_label("WHO scale", fontsize=7.5)
    scale.ax.tick_params(labelsize=6.5)
    handles = [
        Line2D([], [], marker="v", color="#0072B2", ls="", ms=6, label="infusion"),
        Line2D(
            [],
            [],
            marker="o",
            color="#E69F00",
            mec="#000000",
            mew=0.5,
            ls="",
            ms=5.5,
            label="adverse event (G = grade)",
        ),
        Line2D(
            [],
            [],
            marker="*",
            color="#D55E00",
            mec="#000000",
            mew=0.5,
            ls="",
            ms=8,
            label="serious adverse event",
        ),
        Line2D(
            [],
            [],
            marker="D",
            mfc="white",
            mec="#009E73",
            mew=1.8,
            ls="",
            ms=6,
            label="discharged alive",
        ),
        Line2D([], [], marker="X", color="#000000", ls="", ms=8, label="died"),
    ]
    if ax2 is None:  # below the day axis and its label, which it covered when put at the axes
        ax.set_xlabel("Study day (day 0 = first infusion)")
        figure.legend(
            handles=handles, loc="outside lower center", ncol=5, fontsize=7.5, frameon=False
        )
        return figure
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.04),
        ncol=5,
        fontsize=7.5,
        frameon=False,
    )
    daily = oxygenation.assign(subject_id=oxygenation["subject_id"].astype(str))
    daily = daily[daily["subject_id"].isin(ids) & daily["sf_ratio"].notna()]
    colours = _subject_colours(ids)
    for subject, group in daily.groupby("subject_id"):
        days = group["study_day"].to_numpy(float)
        values = group["sf_ratio"].to_numpy(float)
        gap = np.r_[False, np.diff(days) > 2]  # no line across days without a value
        days = np.insert(days, np.flatnonzero(gap), np.nan)
        values = np.insert(values, np.flatnonzero(gap), np.nan)
        ax2.plot(
            days,
            values,
            "-",
            color=colours[subject],
            lw=1.0,
            marker=".",
            ms=3,
            alpha=0.9 if len(ids) <= MAX_COLOURED else 0.4,
        )
    per_day = daily.groupby("study_day")["sf_ratio"].agg(["median", "count"])
    enough = per_day["count"] >= max(3, int(np.ceil(0.75 * len(ids))))
    median = per_day["median"].where(enough)
    ax2.plot(median.index, median.to_numpy(), "-", color=MEDIAN_COLOUR, lw=2.4, label="median")
    ax2.axhline(200, color="#D55E00", ls="--", lw=0.8)
    ax2.annotate(
        "S/F 200", (horizon_days + 1.4, 200), fontsize=7, color="#D55E00", ha="right", va="bottom"
    )
    for day in infusion_days_of(infusions):
        ax2.axvline(day, color=INFUSION_COLOUR, ls=":", lw=1.0)
    ax2.set_ylabel("SpO₂/FiO₂\n(daily median, SpO₂ ≤ 97 %)", fontsize=8.5)
    ax2.set_xlabel("Study day (day 0 = first infusion)")
    ax2.grid(axis="y", color="#E5E5E5", lw=0.6)
    for side in ("top", "right"):
        ax2.spines[side].set_visible(False)
    if len(ids) <= MAX_COLOURED:
        handles2 = [Line2D([], [], color=colours[s], lw=1.2, label=s) for s in ids]
    else:
        handles2 = [Line2D([], [], color="#9A9A9A", lw=1.0, label="each subject")]
    handles2.append(
        Line2D(
            [], [], color=MEDIAN_COLOUR, lw=2.4, label="median (days with ≥ 3/4\nof the subjects)"
        )
    )
    ax2.legend(
        handles=handles2, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False
    )
    return figure
