"""Figures of the external comparison: marker trajectories and Kaplan–Meier curves by arm.

The love plot lives with the balance statistics
(:func:`celltrial.external.balance.render_love_plot`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from celltrial.external.compare import MortalityResult
from celltrial.external.spec import TargetTrialSpec
from celltrial.labels import display_unit
from celltrial.report.figures import PALETTE

TREATED, CONTROL = PALETTE[0], PALETTE[1]
#: Individual control lines are drawn only up to this many controls (medians always).
MAX_CONTROL_LINES = 300


#: A daily median is drawn only where at least this many subjects have a value that day.
MIN_FOR_MEDIAN = 2


def _minor_label(x: float, _pos: int) -> str:
    lead = f"{x:.0e}"[0]
    return f"{x:g}" if lead in "25" else ""


def _median_by_day(rows: pd.DataFrame) -> pd.DataFrame:
    table = rows.groupby("day")["value"].agg(["median", "size"]).reset_index()
    return table[table["size"] >= MIN_FOR_MEDIAN]


def render_trajectories(aligned: pd.DataFrame, *, spec: TargetTrialSpec) -> Figure:
    """One panel per trajectory marker: individual lines (thin) and daily medians (bold) per arm,
    log scale, days since time zero."""
    markers = [m for m in spec.outcomes.trajectory_markers if m in set(aligned["marker"])]
    n = max(len(markers), 1)
    cols = 2 if n > 1 else 1
    rows_n = int(np.ceil(n / cols))
    figure = Figure(figsize=(5.2 * cols, 3.3 * rows_n + 0.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows_n, cols, squeeze=False).ravel())
    last_day = spec.outcomes.trajectory_days[1]
    for ax, marker in zip(axes, markers, strict=False):
        rows = aligned[(aligned["marker"] == marker) & (aligned["value"] > 0)]
        for arm, colour, alpha, width in (
            ("external", CONTROL, 0.35, 0.7),
            ("treated", TREATED, 0.8, 1.1),
        ):
            arm_rows = rows[rows["arm"] == arm]
            ids = arm_rows["subject_id"].unique()
            if arm == "external" and len(ids) > MAX_CONTROL_LINES:
                ids = ids[:MAX_CONTROL_LINES]
            for code in ids:
                one = arm_rows[arm_rows["subject_id"] == code]
                ax.plot(
                    one["hours"] / 24.0,
                    one["value"],
                    color=colour,
                    alpha=alpha,
                    linewidth=width,
                    marker="o",
                    markersize=2,
                )
            medians = _median_by_day(arm_rows)
            label = "treated" if arm == "treated" else "matched controls"
            ax.plot(
                medians["day"],
                medians["median"],
                color=colour,
                linewidth=2.6,
                label=f"{label} ({len(arm_rows['subject_id'].unique())}): daily median",
                zorder=5,
            )
        spec_m = spec.markers[marker]
        tests = (
            spec_m.treated
            if spec_m.treated == spec_m.external
            else f"{spec_m.treated} treated / {spec_m.external} controls"
        )
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_title(f"{spec_m.label} ({tests})", fontsize=9.5)
        ax.set_ylabel(display_unit(spec_m.unit))
        ax.set_xlabel("Days since time zero")
        ax.set_xlim(-3.2, last_day + 0.5)
        ax.axvline(0, color="0.4", linewidth=0.8, linestyle="--")
        ax.grid(color="0.93")
        ax.legend(fontsize=7, frameon=False, loc="best")
    for ax in axes[len(markers) :]:
        ax.set_visible(False)
    figure.suptitle(
        "Marker trajectories aligned to time zero (treated: first infusion; controls: landmark); "
        f"thin lines: individuals; bold: daily median where ≥ {MIN_FOR_MEDIAN} values",
        fontsize=10,
    )
    return figure


def _step(table: pd.DataFrame, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    times = np.r_[0.0, table["time"].to_numpy(float), horizon]
    survival = np.r_[1.0, table["survival"].to_numpy(float)]
    survival = np.r_[survival, survival[-1]]
    return times, survival


def render_mortality(mortality: MortalityResult) -> Figure:
    """Kaplan–Meier survival by arm to the horizon, censoring ticks and numbers at risk."""
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes, table_axes = figure.subplots(2, 1, height_ratios=[5, 1])
    horizon = mortality.horizon
    labels = {"treated": "treated", "external": "matched controls (weighted)"}
    for arm, colour in (("treated", TREATED), ("external", CONTROL)):
        table = mortality.curves.get(arm)
        if table is None or table.empty:
            continue
        times, survival = _step(table, horizon)
        risk = mortality.summary.set_index("arm").loc[arm, "km_risk"]
        axes.step(
            times,
            survival,
            where="post",
            color=colour,
            linewidth=2,
            label=f"{labels[arm]}: {horizon:g}-day mortality {100 * risk:.0f} %",
        )
        rows = mortality.times[mortality.times["arm"] == arm]
        censored = rows[~rows["event"] & (rows["duration"] < horizon)]
        for t in censored["duration"]:
            s = table.loc[table["time"] <= t, "survival"]
            axes.plot(
                t, float(s.iloc[-1]) if len(s) else 1.0, marker="|", color=colour, markersize=9
            )
    axes.set_ylim(-0.02, 1.04)
    axes.set_xlim(0, horizon)
    axes.set_xlabel("Days since time zero")
    axes.set_ylabel("Probability of survival")
    axes.grid(color="0.93")
    axes.legend(loc="lower left", fontsize=8, frameon=False)
    ticks = np.arange(0, horizon + 1, 7)
    axes.set_xticks(ticks)
    rows_text = []
    for arm in ("treated", "external"):
        rows = mortality.times[mortality.times["arm"] == arm]
        counts = "".join(f"{int((rows['duration'] >= t).sum()):>6d}" for t in ticks)
        rows_text.append(f"{'treated' if arm == 'treated' else 'controls':<9}{counts}")
    header = f"{'day':<9}" + "".join(f"{int(t):>6d}" for t in ticks)
    table_axes.axis("off")
    table_axes.text(
        0.0,
        1.0,
        "Numbers at risk\n" + header + "\n" + "\n".join(rows_text),
        family="monospace",
        fontsize=7.5,
        va="top",
        transform=table_axes.transAxes,
    )
    axes.set_title(f"Survival from time zero to day {horizon:g}", fontsize=10)
    return figure
