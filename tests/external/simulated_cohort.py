"""A seeded simulated external cohort for tests that must compare runs: patients admitted over 40
days, an outcome tied to a latent severity, and 2-8 draws of four markers (lymphocytes,
neutrophils, CRP, D-dimer) over each stay."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Each marker's median and how strongly severity moves it (on the log scale).
MARKERS = {"LYM": (0.8, -0.35), "NEUT": (6.0, 0.35), "HSCRP": (50.0, 0.9), "DDIMER": (2.0, 0.8)}


def simulated_external_cohort(
    n: int, seed: int, *, start: pd.Timestamp, whole_hours: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subjects, observations) of ``n`` patients from ``seed``. ``whole_hours``: draws fall on
    whole hours, so that one patient's draws at the same time happen (the last in frame order
    wins)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"X{i:04d}" for i in range(n)], dtype=object)
    admitted = start + pd.to_timedelta(rng.integers(0, 40 * 24, n), unit="h")
    severity = rng.normal(0, 1, n)
    stay = np.clip(rng.gamma(4, 3, n), 1, 40)
    dies = rng.random(n) < 1 / (1 + np.exp(-(severity - 0.2) * 2))
    end = pd.Series(admitted + pd.to_timedelta(stay * 24, unit="h"))
    subjects = pd.DataFrame(
        {
            "subject_id": ids,
            "sex": np.where(rng.random(n) < 0.6, "M", "F"),
            "age": np.clip(rng.normal(59, 16, n).round(), 18, 95),
            "admitted": admitted,
            "discharged": end.where(~dies),
            "died": end.where(dies),
        }
    )
    owner = np.repeat(np.arange(n), rng.integers(2, 9, n))
    hours = rng.uniform(0, 1, len(owner)) * stay[owner] * 24
    if whole_hours:
        hours = np.floor(hours)
    rows = [
        pd.DataFrame(
            {
                "subject_id": ids[owner],
                "time": admitted[owner] + pd.to_timedelta(hours, unit="h"),
                "test": test,
                "value": median * np.exp(slope * severity[owner] + rng.normal(0, 0.4, len(owner))),
            }
        )
        for test, (median, slope) in MARKERS.items()
    ]
    return subjects, pd.concat(rows, ignore_index=True)
