"""Participant flow (CONSORT-like) as an inline SVG diagram: enrolled → infusions → outcome."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import pandas as pd
from markupsafe import Markup

from celltrial.overview import StudyOverview


@dataclass(frozen=True)
class FlowCounts:
    """How many subjects reached each step, and who left where."""

    enrolled: int
    infusions: tuple[int, ...]
    completed: int
    died: int
    ongoing: int
    withdrawn: int


def compute_flow(overview: StudyOverview, *, follow_up_days: int) -> FlowCounts:
    """Counts from the schedule status: infusions received, completed follow-up, died, ongoing."""
    given = overview.infusions[overview.infusions["actual_day"].notna()]
    numbers = sorted(overview.infusions["number"].unique()) if len(overview.infusions) else []
    per_infusion = tuple(int(given[given["number"] == k]["subject_id"].nunique()) for k in numbers)
    subjects = overview.subjects
    died = int(subjects["died"].notna().sum())
    withdrawn = int(subjects["withdrawn"].notna().sum()) if "withdrawn" in subjects else 0
    end = subjects["first_infusion"] + pd.Timedelta(days=follow_up_days)
    reached = (end <= overview.today) & subjects["died"].isna()
    if "withdrawn" in subjects:
        reached &= subjects["withdrawn"].isna()
    completed = int(reached.sum())
    return FlowCounts(
        enrolled=len(subjects),
        infusions=per_infusion,
        completed=completed,
        died=died,
        ongoing=len(subjects) - completed - died - withdrawn,
        withdrawn=withdrawn,
    )


def render_flow_svg(counts: FlowCounts, *, follow_up_days: int) -> Markup:
    """A vertical flow diagram; each box states its count, side boxes who left before the end."""
    steps = [f"Enrolled and treated: {counts.enrolled}"]
    steps += [f"Received infusion {k}: {n}" for k, n in enumerate(counts.infusions, start=1)]
    steps.append(f"Completed {follow_up_days}-day follow-up: {counts.completed}")
    box_w, box_h, gap, x = 300, 38, 22, 20
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
    side = [
        f"Died: {counts.died}",
        f"Withdrawn: {counts.withdrawn}",
        f"Follow-up ongoing: {counts.ongoing}",
    ]
    for j, text in enumerate(side):
        y = 10 + (len(steps) - 1) * (box_h + gap) - (len(side) - 1 - j) * (box_h + 6)
        parts.append(
            f'<rect x="{x + box_w + 60}" y="{y}" width="220" height="{box_h}" rx="5" '
            f'fill="#fff" stroke="#D55E00" stroke-width="1.2"/>'
            f'<text x="{x + box_w + 170}" y="{y + box_h / 2 + 5}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    width = x + box_w + 60 + 240
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="13"><title>Participant flow</title><defs><marker id="arrow" '
        'viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>'
        + "".join(parts)
        + "</svg>"
    )
