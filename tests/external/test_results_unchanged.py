"""The external comparison is what it was before issue 26's speed work: the 5- and 30-subject
simulated studies against a seeded simulated external cohort, every frame and number to 1e-8
(in fact identical), every caveat word for word.

"Before" is computed here with the previous code (tests/external/reference_before.py: the as-of
merge on text keys and zoned times, the covariates per landmark row, the alignment through
Timestamp objects) patched in for the new.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.cohort import simulate
from celltrial.external import analysis, compare, eligibility
from celltrial.external.analysis import summarize_external
from celltrial.external.spec import load_target_trial
from celltrial.protocol import resolve_protocol
from tests.external import reference_before
from tests.external.simulated_cohort import simulated_external_cohort

T0 = pd.Timestamp("2020-01-20T00:00:00Z")


def external_cohort(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients with 2-8 draws of each marker over their stay, on whole hours."""
    return simulated_external_cohort(n, seed, start=T0, whole_hours=True)


def before(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(eligibility, "_covariates", reference_before._covariates)
        patch.setattr(eligibility, "_marker_values", reference_before._marker_values)
        patch.setattr(
            compare, "derive_aligned_observations", reference_before.derive_aligned_observations
        )
        patch.setattr(
            analysis, "derive_aligned_observations", reference_before.derive_aligned_observations
        )
        return summarize_external(*args, **kwargs)


def same_frame(new: pd.DataFrame, old: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(new, old, check_exact=False, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("n", [5, 30])
def test_external_comparison_unchanged(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    protocol, _ = resolve_protocol(None)
    cohort = simulate(protocol, n, seed=2020)
    first = cohort.infusions.groupby("subject_id")["start_time"].min()
    treated = cohort.subjects.assign(first_infusion=cohort.subjects["subject_id"].map(first))
    subjects, observations = external_cohort(200, seed=n)
    spec = load_target_trial()
    args = (treated, cohort.observations, subjects, observations)
    sensitivity = n == 5  # (the sensitivity runs repeat the same code on other matchings)
    new = summarize_external(*args, spec=spec, cohort="simulated", sensitivity=sensitivity)
    old = before(monkeypatch, *args, spec=spec, cohort="simulated", sensitivity=sensitivity)
    assert new.matching.n_matched_treated > 0  # a comparison, not two empty results
    for name in ("summary", "baseline", "aligned", "availability", "changes", "e_values"):
        same_frame(getattr(new, name), getattr(old, name))
    same_frame(new.matching.matched, old.matching.matched)
    same_frame(new.balance.summary, old.balance.summary)
    same_frame(new.mortality.summary, old.mortality.summary)
    same_frame(new.normalisation.summary, old.normalisation.summary)
    same_frame(new.eligibility_external.summary, old.eligibility_external.summary)
    for marker, model in new.models.items():
        same_frame(model.summary, old.models[marker].summary)
        assert model.caveats == old.models[marker].caveats
    if sensitivity:
        assert new.sensitivity is not None and old.sensitivity is not None
        same_frame(new.sensitivity.summary, old.sensitivity.summary)
    if new.landmark is not None:
        same_frame(new.landmark.summary, old.landmark.summary)
    assert (new.caveats, new.method, new.n) == (old.caveats, old.method, old.n)


def test_window_values_as_before_on_random_frames() -> None:
    """Ties at one time, values without a time, time zeros missing, subjects absent on either
    side, windows of 1-9 h: the last value before time zero is the one the as-of merge found."""
    rng = np.random.default_rng(26)
    base = pd.Timestamp("2020-01-01", tz="UTC")
    for _ in range(60):
        m, n = int(rng.integers(0, 60)), int(rng.integers(1, 40))
        observations = pd.DataFrame(
            {
                "subject_id": rng.choice(["a", "b", "c", "d", "e"], m),
                "time": base + pd.to_timedelta(rng.integers(0, 20, m), unit="h"),
                "test": rng.choice(["X", "Y"], m),
                "value": np.where(rng.random(m) < 0.1, np.nan, rng.random(m)),
            }
        )
        zero = pd.DataFrame(
            {
                "subject_id": rng.choice(["a", "b", "c", "f"], n),
                "time_zero": base + pd.to_timedelta(rng.integers(0, 24, n), unit="h"),
            }
        )
        zero.loc[rng.random(n) < 0.1, "time_zero"] = pd.NaT
        window = pd.Timedelta(hours=int(rng.integers(1, 10)))
        pd.testing.assert_frame_equal(
            eligibility.derive_window_values(observations, zero, test="X", window=window),
            reference_before.derive_window_values(observations, zero, test="X", window=window),
        )
