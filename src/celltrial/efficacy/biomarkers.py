"""Per-visit descriptive summaries of biomarkers (n, median, quartiles, range, geometric mean)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.efficacy.observations import is_log_normal, limit_caveat
from celltrial.errors import CelltrialError
from celltrial.frames import check_columns

#: Columns on which a geometric mean is meaningful for a log-normal marker.
GEOMETRIC_COLUMNS: tuple[str, ...] = ("value", "fold_change")

_QUANTILE_METHODS = (
    "inverted_cdf",
    "averaged_inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "weibull",
    "linear",
    "median_unbiased",
    "normal_unbiased",
)


@dataclass(frozen=True, eq=False)
class VisitSummary:
    """Per test × visit descriptive statistics of one column (``summary``, one row each)."""

    summary: pd.DataFrame
    column: str
    n_subjects: int
    n_observations: int
    quantile_method: str
    method: str
    caveats: tuple[str, ...]


def summarize_visits(
    observations: pd.DataFrame,
    *,
    column: str = "value",
    quantile_method: str = "linear",
    log_normal: Mapping[str, bool] | None = None,
) -> VisitSummary:
    """Summarise ``column`` per test × nominal visit over the scheduled observations.

    Needs a ``visit`` column (see :func:`~celltrial.efficacy.visits.derive_nominal_visits`);
    rows without a visit or flagged ``unscheduled`` are left out. Columns of ``summary``: test,
    visit, visit_day (when present), n (non-missing values), n_missing, n_subjects, median, q1,
    q3, min, max, mean, sd and geometric_mean — the latter only for log-normal markers (catalogue
    flag, or ``log_normal`` overrides) on ``value`` or ``fold_change``, NaN when a value is ≤ 0.
    Quartiles use numpy's ``quantile_method`` ("linear" = R type 7; "averaged_inverted_cdf" = SAS
    QNTLDEF=5).
    """
    check_columns(observations, ("subject_id", "test", "visit", column), what="observation")
    if quantile_method not in _QUANTILE_METHODS:
        raise CelltrialError(
            f"quantile_method must be one of {', '.join(_QUANTILE_METHODS)}; "
            f"got {quantile_method!r}"
        )
    keep = observations["visit"].notna()
    if "unscheduled" in observations.columns:
        keep &= ~observations["unscheduled"].fillna(False).astype(bool)
    has_day = "visit_day" in observations.columns
    columns = ["subject_id", "test", "visit", column] + (["visit_day"] if has_day else [])
    columns += ["qualifier"] if "qualifier" in observations.columns else []
    rows = observations.loc[keep, columns].copy()
    rows[column] = pd.to_numeric(rows[column], errors="coerce").astype(float)
    rows["visit"] = rows["visit"].astype(object)
    keys = ["test", "visit"]

    grouped = rows.groupby(keys, sort=False)
    values = grouped[column]
    table = values.agg(
        n="count", median="median", min="min", max="max", mean="mean", sd="std"
    ).reset_index()
    table.insert(3, "n_missing", values.size().to_numpy() - table["n"].to_numpy())
    present = rows[rows[column].notna()]
    table.insert(
        4,
        "n_subjects",
        present.groupby(keys, sort=False)["subject_id"]
        .nunique()
        .reindex(pd.MultiIndex.from_frame(table[keys]), fill_value=0)
        .to_numpy(),
    )
    quartiles = present.groupby(keys, sort=False)[column].agg(
        q1=lambda s: float(np.quantile(s.to_numpy(), 0.25, method=quantile_method)),
        q3=lambda s: float(np.quantile(s.to_numpy(), 0.75, method=quantile_method)),
    )
    table = table.merge(quartiles.reset_index(), on=keys, how="left")
    caveats: list[str] = []
    if column in GEOMETRIC_COLUMNS and not present.empty:
        geometric = _geometric_means(present, keys, column, log_normal, caveats)
        table = table.merge(geometric, on=keys, how="left")
    else:
        table["geometric_mean"] = np.nan
    if has_day:
        days = grouped["visit_day"].first().reset_index()
        table = table.merge(days, on=keys, how="left")
        table = table.sort_values(["test", "visit_day", "visit"], kind="stable")
    else:
        table = table.sort_values(["test", "visit"], kind="stable")
    order = ["test", "visit"] + (["visit_day"] if has_day else [])
    order += ["n", "n_missing", "n_subjects", "median", "q1", "q3", "min", "max", "mean", "sd"]
    table = table[[*order, "geometric_mean"]].reset_index(drop=True)

    note = limit_caveat(present) if column == "value" else None
    if note:
        caveats.append(note)
    if (table["n"] < 4).any():
        caveats.append("some visits have fewer than 4 values: quartiles are interpolations")
    return VisitSummary(
        summary=table,
        column=column,
        n_subjects=int(present["subject_id"].nunique()),
        n_observations=len(present),
        quantile_method=quantile_method,
        method=(
            f"descriptive statistics of {column} per test and nominal visit over scheduled "
            f"observations; quartiles by numpy quantile method {quantile_method!r}; geometric "
            "mean = exp(mean of natural logs) for log-normal markers"
        ),
        caveats=tuple(caveats),
    )


def _geometric_means(
    present: pd.DataFrame,
    keys: list[str],
    column: str,
    log_normal: Mapping[str, bool] | None,
    caveats: list[str],
) -> pd.DataFrame:
    """exp(mean log) per test × visit for log-normal tests; NaN when a value is ≤ 0."""
    values = present[column].to_numpy(float)
    positive = values > 0
    logs = np.log(np.where(positive, values, 1.0))
    frame = present[keys].assign(_log=np.where(positive, logs, np.nan), _bad=~positive)
    stats = frame.groupby(keys, sort=False).agg(mean_log=("_log", "mean"), bad=("_bad", "sum"))
    stats = stats.reset_index()
    tests = stats["test"].unique()
    log_tests = [t for t in tests if is_log_normal(str(t), log_normal)]
    wanted = stats["test"].isin(log_tests).to_numpy()
    clean = stats["bad"].to_numpy() == 0
    stats["geometric_mean"] = np.where(wanted & clean, np.exp(stats["mean_log"]), np.nan)
    bad = stats.loc[wanted & ~clean, keys]
    if len(bad):
        shown = ", ".join(f"{t} at {v}" for t, v in bad.head(5).itertuples(index=False))
        caveats.append(f"geometric mean not given where a value is ≤ 0: {shown}")
    return stats[[*keys, "geometric_mean"]]
