"""The efficacy analysis of the 5- and 30-subject simulated studies is what it was before the
exact mixed-model fit: every number to 1e-8, every caveat and finding word for word.

"Before" is computed here: the same analysis with the exact fit turned off (statsmodels MixedLM
for every model, the code path the mixed model always took before).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from celltrial.cohort import simulate
from celltrial.efficacy import mixed
from celltrial.efficacy.analysis import summarize_efficacy
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames

TODAY = pd.Timestamp("2020-06-01", tz="UTC")


def assert_frames_close(new: pd.DataFrame, old: pd.DataFrame) -> None:
    assert list(new.columns) == list(old.columns) and len(new) == len(old)
    for column in new.columns:
        a, b = new[column], old[column]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), rtol=1e-8, atol=1e-8, err_msg=column
            )
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), column


@pytest.fixture(scope="module", params=[5, 30])
def analyses(request, tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp(f"unchanged{request.param}") / "s", user="test")
    cohort = simulate(handle.protocol, request.param, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    frames = read_study_frames(handle)
    handle.engine.dispose()
    used = []

    def counting(*args):
        fit = exact(*args)
        used.append(fit is not None)
        return fit

    exact = mixed.fit_random_intercept
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(mixed, "fit_random_intercept", counting)
        new = summarize_efficacy(frames, handle.protocol, today=TODAY)
        patch.setattr(mixed, "fit_random_intercept", lambda *a: None)
        old = summarize_efficacy(frames, handle.protocol, today=TODAY)
    finally:
        patch.undo()
    return request.param, new, old, used


def test_mixed_models_unchanged(analyses) -> None:
    n, new, old, used = analyses
    assert new.mixed.keys() == old.mixed.keys()
    for test, model in new.mixed.items():
        before = old.mixed[test]
        assert (model.fitted, model.converged, model.caveats, model.df) == (
            before.fitted,
            before.converged,
            before.caveats,
            before.df,
        ), test
        assert_frames_close(model.summary, before.summary)
        if model.fitted:  # statsmodels' optimiser stopped ~1e-7 short of the REML optimum
            assert model.subject_variance == pytest.approx(before.subject_variance, rel=1e-6)
            assert model.residual_variance == pytest.approx(before.residual_variance, rel=1e-6)
    if n == 30:  # the exact fit did the work (not statsmodels compared with itself)
        assert sum(used) >= 5


def test_whole_analysis_unchanged(analyses) -> None:
    _, new, old, _ = analyses
    assert_frames_close(new.summary, old.summary)
    assert_frames_close(new.paired.summary, old.paired.summary)
    assert [f.text for f in new.findings] == [f.text for f in old.findings]
    assert new.caveats == old.caveats
    assert new.method == old.method
