"""The swimmer plot's adverse-event grade labels stay inside their subject's lane at any number
of lanes (at 40 lanes a label set below the lane sat in the next subject's)."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from celltrial.efficacy.figures import render_swimmer


def _cohort(n: int) -> dict[str, pd.DataFrame]:
    ids = [f"S{i:03d}" for i in range(1, n + 1)]
    status = pd.DataFrame(
        [{"subject_id": s, "study_day": d, "who": 7 - d // 7} for s in ids for d in range(-1, 22)]
    )
    clinical = pd.DataFrame({"subject_id": ids, "discharge_day": 21.0, "death_day": float("nan")})
    infusions = pd.DataFrame([{"subject_id": s, "study_day": d} for s in ids for d in (0, 3, 6)])
    events = pd.DataFrame(
        [
            {
                "subject_id": s,
                "onset_day": 1 + i % 9,
                "term": "Fever",
                "serious": i % 4 == 0,
                "grade": 1 + i % 5,
            }
            for i, s in enumerate(ids)
        ]
    )
    return {"status": status, "clinical": clinical, "infusions": infusions, "events": events}


@pytest.mark.parametrize("n", [5, 40])
def test_grade_labels_stay_in_their_lane(n):
    data = _cohort(n)
    figure = render_swimmer(
        data["status"],
        clinical=data["clinical"],
        infusions=data["infusions"],
        adverse_events=data["events"],
    )
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    ax = figure.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("G")]
    assert len(labels) == n
    for label in labels:
        lane = label.xy[1]
        box = label.get_window_extent(renderer).transformed(ax.transData.inverted())
        assert lane - 0.5 <= box.y0 and box.y1 <= lane + 0.5, (label.get_text(), lane, box)


def test_legend_clears_the_day_axis_without_oxygen_panel():
    data = _cohort(40)
    figure = render_swimmer(
        data["status"],
        clinical=data["clinical"],
        infusions=data["infusions"],
        adverse_events=data["events"],
    )
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    ax = figure.axes[0]
    (legend,) = [*figure.legends, *([ax.get_legend()] if ax.get_legend() else [])]
    below = legend.get_window_extent(renderer)
    label = ax.xaxis.label.get_window_extent(renderer)
    ticks = ax.xaxis.get_tightbbox(renderer)
    assert below.y1 <= label.y0 and below.y1 <= ticks.y0, (below, label, ticks)
    assert below.y0 >= 0  # on the figure
