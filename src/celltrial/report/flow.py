"""Participant flow (CONSORT-like) as an inline SVG diagram and in words: enrolled → treated
(the safety population) → infusions → outcome, with who left where and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import pandas as pd
from markupsafe import Markup

from celltrial.overview import StudyOverview


@dataclass(frozen=True)
class FlowCounts:
    """How many subjects reached each step, and who left where.

    ``enrolled``: the study's subjects; ``treated``: those who received any infusion (the safety
    population); ``not_treated``: the others, each with why (``subject_id`` → reason). Died,
    withdrawn, completed and ongoing count treated subjects only.
    """

    enrolled: int
    infusions: tuple[int, ...]
    completed: int
    died: int
    ongoing: int
    withdrawn: int
    treated: int | None = None  # None: made by an older caller, every subject enrolled treated
    not_treated: dict[str, str] = field(default_factory=dict)

    @property
    def n_treated(self) -> int:
        return self.enrolled if self.treated is None else self.treated


def compute_flow(overview: StudyOverview, *, follow_up_days: int) -> FlowCounts:
    """Counts from the schedule status: enrolled, treated (any infusion received), infusions
    received, completed follow-up, died, withdrawn, ongoing; a subject without an infusion is
    not treated, and says why: died or withdrawn before it, else no infusion recorded."""
    given = overview.infusions[overview.infusions["actual_day"].notna()]
    numbers = sorted(overview.infusions["number"].unique()) if len(overview.infusions) else []
    per_infusion = tuple(int(given[given["number"] == k]["subject_id"].nunique()) for k in numbers)
    subjects = overview.subjects
    treated_mask = subjects["first_infusion"].notna()
    treated = subjects[treated_mask]
    withdrawn_of = subjects.get("withdrawn")
    not_treated = {}
    for row in subjects[~treated_mask].itertuples():
        if pd.notna(row.died):
            why = "died before any infusion"
        elif withdrawn_of is not None and pd.notna(withdrawn_of.loc[row.Index]):
            why = "withdrawn before any infusion"
        else:
            why = "no infusion recorded"
        not_treated[str(row.subject_id)] = why
    died = int(treated["died"].notna().sum())
    withdrawn = (
        int((treated["withdrawn"].notna() & treated["died"].isna()).sum())
        if "withdrawn" in treated
        else 0
    )
    end = treated["first_infusion"] + pd.Timedelta(days=follow_up_days)
    reached = (end <= overview.today) & treated["died"].isna()
    if "withdrawn" in treated:
        reached &= treated["withdrawn"].isna()
    completed = int(reached.sum())
    return FlowCounts(
        enrolled=len(subjects),
        infusions=per_infusion,
        completed=completed,
        died=died,
        ongoing=len(treated) - completed - died - withdrawn,
        withdrawn=withdrawn,
        treated=len(treated),
        not_treated=dict(sorted(not_treated.items())),
    )


def _not_treated_text(counts: FlowCounts, *, limit: int | None = None) -> str:
    """ "S007, S008: no infusion recorded; S009: died before any infusion" (with ``limit``, at
    most that many codes per reason, then "… (n in all)")."""
    by_reason: dict[str, list[str]] = {}
    for code, why in counts.not_treated.items():
        by_reason.setdefault(why, []).append(code)

    def codes_text(codes: list[str]) -> str:
        if limit is None or len(codes) <= limit:
            return ", ".join(codes)
        return f"{', '.join(codes[:limit])}, … ({len(codes)} in all)"

    return "; ".join(f"{codes_text(codes)}: {why}" for why, codes in by_reason.items())


def describe_flow(counts: FlowCounts, *, follow_up_days: int) -> str:
    """The participant flow in words, every count out of the subjects treated:
    "5 subjects enrolled, 5 treated (the safety population). Received infusion 1: 5; …"."""
    treated = counts.n_treated
    text = f"{counts.enrolled} subject(s) enrolled, {treated} treated (the safety population)"
    if counts.not_treated:
        text += f"; not treated: {_not_treated_text(counts)}"
    received = "; ".join(f"infusion {k}: {n}" for k, n in enumerate(counts.infusions, start=1))
    text += f". Received {received or 'no infusion yet'}."
    if treated:
        text += (
            f" Of the {treated} treated: {counts.completed} completed the {follow_up_days}-day "
            f"follow-up, {counts.died} died, {counts.withdrawn} withdrew, {counts.ongoing} still "
            "in follow-up."
        )
    return text


def render_flow_svg(counts: FlowCounts, *, follow_up_days: int) -> Markup:
    """A vertical flow diagram; each box states its count, side boxes who left before the end
    (beside "Enrolled": those not treated and why)."""
    steps = [
        f"Enrolled: {counts.enrolled}",
        f"Treated (safety population): {counts.n_treated}",
    ]
    steps += [f"Received infusion {k}: {n}" for k, n in enumerate(counts.infusions, start=1)]
    steps.append(f"Completed {follow_up_days}-day follow-up: {counts.completed}")
    box_w, box_h, gap, x = 300, 38, 22, 20
    side_x, side_w = x + box_w + 60, 300
    height = len(steps) * (box_h + gap)
    parts = []
    for i, text in enumerate(steps):
        y = 10 + i * (box_h + gap)
        parts.append(
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="#f1f4f8" '
            f'stroke="#0072B2" stroke-width="1.5"/>'
            f'<text x="{x + box_w / 2}" y="{y + box_h / 2 + 5}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
        if i:
            parts.append(
                f'<line x1="{x + box_w / 2}" y1="{y - gap}" x2="{x + box_w / 2}" y2="{y}" '
                'stroke="#333" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    # not treated: beside the arrow from "Enrolled" to "Treated", one line per reason
    lines = [f"Not treated: {len(counts.not_treated)}"]
    if counts.not_treated:
        lines += _not_treated_text(counts, limit=3).split("; ")
    side_h = box_h if len(lines) == 1 else 12 + 14 * len(lines)
    arrow_y = 10 + box_h + gap / 2
    y = arrow_y - box_h / 2
    parts.append(
        f'<line x1="{x + box_w / 2}" y1="{arrow_y}" x2="{side_x}" y2="{arrow_y}" '
        'stroke="#333" stroke-width="1" marker-end="url(#arrow)"/>'
        f'<rect x="{side_x}" y="{y}" width="{side_w}" height="{side_h}" rx="5" fill="#fff" '
        f'stroke="#D55E00" stroke-width="1.2"/>'
    )
    for k, line in enumerate(lines):
        size = "" if k == 0 else ' font-size="11"'
        offset = (box_h / 2 + 5) if len(lines) == 1 else (19 + 14 * k)
        parts.append(
            f'<text x="{side_x + side_w / 2}" y="{y + offset}" text-anchor="middle"{size}>'
            f"{escape(line)}</text>"
        )
    side = [
        f"Died: {counts.died}",
        f"Withdrawn: {counts.withdrawn}",
        f"Follow-up ongoing: {counts.ongoing}",
    ]
    first = max(
        10 + (len(steps) - 1) * (box_h + gap) - (len(side) - 1) * (box_h + 6),
        y + side_h + 12,  # below the "not treated" box
    )
    height = max(height, int(first + len(side) * (box_h + 6) + 4))
    for j, text in enumerate(side):
        y = first + j * (box_h + 6)
        parts.append(
            f'<rect x="{side_x}" y="{y}" width="{side_w}" height="{box_h}" rx="5" '
            f'fill="#fff" stroke="#D55E00" stroke-width="1.2"/>'
            f'<text x="{side_x + side_w / 2}" y="{y + box_h / 2 + 5}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    width = side_x + side_w + 20
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="13"><title>Participant flow</title><defs><marker id="arrow" '
        'viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>'
        + "".join(parts)
        + "</svg>"
    )
