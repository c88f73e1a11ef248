"""The frame grader (derive_lab_grades) and the one-value grader (explain_grade) agree, row by row.

derive_lab_grades groups rows by test, unit and baseline condition, grades each group with
scalar thresholds from compiled tables (celltrial.safety.kernel) and hands groups that need the
full "not gradable" logic to evaluate(); explain_grade runs evaluate() on one value. Random
frames over every numeric CTCAE term, every unit its thresholds are printed in (plus converted
and unconvertible ones), values exactly at thresholds and at the neighbouring floats, missing
LLN/ULN (each alone or both), missing and abnormal baselines, baseline flags, the baselines' own
ranges, anticoagulation and reporting-limit qualifiers must get the same grade and reason.
"""

from __future__ import annotations

import math
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from celltrial.catalogue import load_catalogue
from celltrial.errors import UnitError
from celltrial.safety import derive_lab_grades, explain_grade, load_ctcae_criteria
from celltrial.safety.criteria import read_criteria
from celltrial.safety.evaluate import _nudged
from celltrial.units import convert

EXTRA_UNITS = {  # beyond the canonical unit and those the criteria print: converted or refused
    "BILI": ["mg/dL", "%"],
    "CREAT": ["mg/dL", "mmol/L"],
    "URATE": ["mg/dL"],
    "K": ["mEq/L"],
    "SODIUM": ["mEq/L"],
    "CA": ["mEq/L"],
    "MG": ["mEq/L"],
    "ALT": ["IU/L", "mg/dL"],
    "AST": ["IU/L"],
    "LYM": ["cells/uL", "%"],
    "HGB": ["10^9/L"],
    "INR": [""],
}
OTHER_TESTS = ["CRP", "DDIMER"]  # no CTCAE term


def _catalogue_setup() -> tuple[dict[str, list[str]], dict[str, tuple[float, float]]]:
    table = load_ctcae_criteria()
    catalogue = load_catalogue()
    units: dict[str, list[str]] = {}
    for term in table.terms.values():
        if not term.numeric:
            continue
        spelled = {u for r in term.grades for c in r.criteria for _, u in c.alternatives if u}
        found = units.setdefault(term.test, [catalogue.get(term.test).unit])
        for unit in sorted(spelled) + EXTRA_UNITS.get(term.test, []):
            if unit not in found:
                found.append(unit)
    reference = {}
    for test in list(units) + OTHER_TESTS:
        entry = catalogue.get(test)
        lo, hi = entry.reference if entry.reference else (1.0, 2.0)
        reference[test] = (float(lo), float(hi))
    for test in OTHER_TESTS:
        units[test] = [catalogue.get(test).unit]
    return units, reference


def _in_unit(x: float, test: str, unit: str) -> float | None:
    catalogue = load_catalogue()
    entry = catalogue.get(test)
    valence = {"K": 1, "SODIUM": 1, "CA": 2, "CACORR": 2, "CAION": 2, "MG": 2}.get(test)
    try:
        return float(convert(x, entry.unit, unit, molar_mass=entry.molar_mass, valence=valence))
    except (UnitError, ValueError, TypeError):
        return None


def _thresholds(test: str, unit: str, lln: float, uln: float, base: float) -> list[float]:
    """Every threshold of both terms of ``test`` in ``unit`` for these limits and baseline.

    Each comes twice: as printed and moved by evaluate()'s 1e-9 tolerance (for multiples: the
    value whose ratio to the limit is the moved multiple), the float where ``>`` and ``>=`` part.
    """
    table = load_ctcae_criteria()
    out: list[float] = []
    for direction in ("low", "high"):
        term = table.for_test(test, direction)
        if term is None or not term.numeric:
            continue
        try:
            compiled = table.compile(term, unit)
        except UnitError:
            continue
        for rc in compiled.criteria:
            kind, number = rc.criterion.kind, rc.number
            if kind == "absolute":
                out.append(number)
                out.append(_nudged(rc.criterion.op, number))  # exactly at the tolerance edge
            elif kind == "plus_uln":
                out.append(uln + number)
            else:  # a multiple of a limit: also where value / limit is the nudged multiple
                factor = 1 + number / 100 if kind == "pct_change" else number
                ref = {"x_uln": uln, "x_lln": lln}.get(kind, base)
                out.append(factor * ref)
                out.append(_nudged(rc.criterion.op, factor) * ref)
    return [t for t in out if math.isfinite(t)]


T0 = pd.Timestamp("2020-02-10T08:00", tz="UTC")


def random_frame(seed: int, n: int, variant: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observations and baselines; ``variant``: plain | flags | ranges (see module docstring).

    Rows carry a ``time`` within a day of T0 (some exactly at it) for the first-infusion tests.
    """
    rng = np.random.default_rng(seed)
    units, reference = _catalogue_setup()
    tests = sorted(units)
    subjects = [f"S{i}" for i in range(12)]
    baselines = []
    base_of: dict[tuple[str, str], float] = {}
    for s in subjects:
        for test in tests:
            if rng.random() < 0.3:
                continue
            lo, hi = reference[test]
            mid = hi if hi > 0 else 1.0
            b = float(mid * rng.choice([0.5, 0.9, 1.0, 1.2, 2.0, 4.0]))
            if lo > 0 and rng.random() < 0.25:
                b = float(lo * rng.choice([0.5, 0.8, 1.0]))
            if rng.random() < 0.08:
                b = np.nan
            base_of[(s, test)] = b
            row = {"subject_id": s, "test": test, "baseline": b}
            if variant == "flags":
                row["baseline_abnormal"] = bool(rng.random() < 0.5)
                row["anticoagulated"] = bool(rng.random() < 0.5)
            if variant == "ranges":
                row["ref_low"] = lo
                row["ref_high"] = float(hi * rng.choice([0.9, 1.0, 1.5]))
                row["anticoagulated"] = bool(rng.random() < 0.3)
            baselines.append(row)
    rows = []
    for _ in range(n):
        test = str(rng.choice(tests))
        unit = str(rng.choice(units[test]))
        s = str(rng.choice(subjects))
        lo, hi = reference[test]
        lln = _in_unit(lo * float(rng.choice([1.0, 0.9, 1.1])), test, unit)
        uln = _in_unit(hi * float(rng.choice([1.0, 0.8, 1.25])), test, unit)
        lln = 1.0 if lln is None else lln
        uln = 2.0 if uln is None else uln
        if rng.random() < 0.12:
            lln = np.nan
        if rng.random() < 0.12:
            uln = np.nan
        base = base_of.get((s, test), np.nan)
        candidates = _thresholds(test, unit, lln, uln, base)
        pick = rng.random()
        if candidates and pick < 0.75:
            t = float(rng.choice(candidates))
            value = float(
                rng.choice(
                    [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), t * 1.01, t * 0.99]
                )
            )
        else:
            centre = uln if math.isfinite(uln) and uln > 0 else 1.0
            value = float(centre * rng.lognormal(0.0, 1.0))
        if rng.random() < 0.03:
            value = np.nan
        qualifier = str(rng.choice(["", "", "", "", "", "", "<", ">", "<=", ">="]))
        rows.append((s, test, value, unit, lln, uln, qualifier))
    obs = pd.DataFrame(
        rows, columns=["subject_id", "test", "value", "unit", "ref_low", "ref_high", "qualifier"]
    )
    hours = rng.choice([-20.0, -1.0, 0.0, 0.0, 1.0, 30.0], size=len(obs))
    obs["time"] = T0 + pd.to_timedelta(hours, unit="h")
    return obs, pd.DataFrame(baselines)


#: first infusions of the "treated" variant: most subjects at T0, one later, some never
FIRST = pd.Series(
    {f"S{i}": T0 + pd.Timedelta(hours=5 if i == 3 else 0) for i in range(10)}, dtype=object
).astype("datetime64[ns, UTC]")


def _scalar(
    row: pd.Series,
    term: str,
    direction: str,
    base: dict | None,
    first: pd.Series | None = None,
    criteria: object = None,
) -> tuple:
    kw: dict = {"criteria": criteria}
    if first is not None:  # not after the subject's first infusion (or none yet)
        start = first.get(row["subject_id"])
        kw["before_first_infusion"] = start is None or not row["time"] > start
    if base is not None:
        b = base["baseline"]
        kw["baseline"] = None if b is None or (isinstance(b, float) and math.isnan(b)) else b
        if "baseline_abnormal" in base:
            kw["baseline_abnormal"] = bool(base["baseline_abnormal"])
        if "ref_low" in base and kw["baseline"] is not None:
            limit = base["ref_high"] if direction == "high" else base["ref_low"]
            b = kw["baseline"]
            kw["baseline_abnormal"] = bool(b > limit if direction == "high" else b < limit)
        if "anticoagulated" in base:
            kw["anticoagulated"] = bool(base["anticoagulated"])
    e = explain_grade(
        term,
        row["value"],
        row["unit"],
        lln=None if math.isnan(row["ref_low"]) else row["ref_low"],
        uln=None if math.isnan(row["ref_high"]) else row["ref_high"],
        qualifier=row["qualifier"],
        **kw,
    )
    return e.grade, e.reason, e.assumed_normal_baseline


@pytest.mark.parametrize(
    ("seed", "variant", "categorical", "treated"),
    [
        (1, "plain", False, False),
        (2, "flags", True, False),
        (3, "ranges", True, False),
        (4, "ranges", False, False),
        (5, "plain", False, True),
        (6, "ranges", True, True),
        (7, "flags", False, True),
        (8, "value reading", False, True),
        (9, "value reading", True, False),
    ],
)
def test_frame_and_scalar_graders_agree(
    seed: int, variant: str, categorical: bool, treated: bool
) -> None:
    """``value reading``: plain frames graded with fibrinogen "if abnormal" read as the value."""
    table = load_ctcae_criteria()
    if variant == "value reading":
        readings = {"Fibrinogen decreased": "if_value_abnormal"}
        conventions = table.conventions.model_copy(update={"readings": readings})
        text = files("celltrial.safety").joinpath("criteria", "ctcae_v5.csv").read_text("utf-8")
        table = read_criteria(text, source="v5", conventions=conventions)
        variant = "plain"
    obs, baselines = random_frame(seed, 1500, variant)
    if categorical:
        obs = obs.astype({"test": "category", "unit": "category", "subject_id": "category"})
    first = FIRST if treated else None
    graded = derive_lab_grades(obs, baselines=baselines, first_infusion=first, criteria=table)
    lookup = {(r["subject_id"], r["test"]): r for r in baselines.to_dict("records")}
    checked = 0
    for i in range(len(obs)):
        row = obs.iloc[i]
        for direction in ("low", "high"):
            term = table.for_test(str(row["test"]), direction)
            got_term = graded[f"term_{direction}"].iloc[i]
            if term is None or not term.numeric:
                assert pd.isna(got_term), (i, direction)
                continue
            assert got_term == term.ctcae_term
            base = lookup.get((row["subject_id"], row["test"]), {"baseline": None})
            grade, reason, assumed = _scalar(row, term.term, direction, base, first, table)
            got = graded[f"grade_{direction}"].iloc[i]
            got = None if got is pd.NA else int(got)
            got_reason = graded[f"reason_{direction}"].iloc[i]
            context = (i, term.term, row.to_dict(), base, got, grade, got_reason, reason)
            assert got == grade, context
            assert bool(graded[f"assumed_normal_baseline_{direction}"].iloc[i]) == assumed, context
            if reason is None:
                assert pd.isna(got_reason), context
            else:
                assert not pd.isna(got_reason) and reason.startswith(got_reason), context
            checked += 1
    assert checked > 1500


def test_random_frames_cover_boundaries_and_missing_inputs() -> None:
    """The generator reaches what the agreement test is about (guards against a dull sample)."""
    obs, baselines = random_frame(3, 1500, "ranges")
    graded = derive_lab_grades(obs, baselines=baselines)
    reasons = set(graded["reason_low"].dropna()) | set(graded["reason_high"].dropna())
    for needed in ("ULN missing", "LLN missing", "value missing", "unit not convertible"):
        assert needed in reasons
    assert any("baseline" in r for r in reasons)
    assert any("reporting limit" in r for r in reasons)
    grades = set(graded["grade_low"].dropna()) | set(graded["grade_high"].dropna())
    assert grades == {0, 1, 2, 3, 4}
    assert graded["assumed_normal_baseline_high"].any()  # missing baselines taken as normal
    treated = derive_lab_grades(obs, baselines=baselines, first_infusion=FIRST)
    before = ~(obs["time"] > obs["subject_id"].map(FIRST)).to_numpy(dtype=bool)
    assert 0.2 < before.mean() < 0.9  # both kinds of row, some exactly at the infusion
    changed = treated["grade_high"].astype("Float64") != graded["grade_high"].astype("Float64")
    assert changed.fillna(True).any()  # the first infusion changes some grades


def _on_edge(target: float, ref: float) -> float | None:
    """A value whose ratio to ``ref`` is exactly ``target`` (None when no float gives it)."""
    value = target * ref
    for _ in range(8):
        ratio = value / ref
        if ratio == target:
            return value
        value = np.nextafter(value, np.inf if ratio < target else -np.inf)
    return None


def test_every_criterion_at_its_exact_tolerance_edge() -> None:
    """Each criterion of each term, its condition met, at the float where it starts to hold."""
    table = load_ctcae_criteria()
    catalogue = load_catalogue()
    rows, baselines = [], []
    for term in table.terms.values():
        if not term.numeric:
            continue
        unit = catalogue.get(term.test).unit
        compiled = table.compile(term, unit)
        lln, uln, base = 4.0, 40.0, 30.0
        for rc in compiled.criteria:
            c = rc.criterion
            factor = 1 + rc.number / 100 if c.kind == "pct_change" else rc.number
            nudged = _nudged(c.op, factor)
            ref = {"x_uln": uln, "x_lln": lln, "x_baseline": base, "pct_change": base}.get(c.kind)
            if c.kind == "absolute":
                edge = nudged
            elif c.kind == "plus_uln":
                edge = (uln + rc.number) * _nudged(c.op, 1.0)
            else:
                edge = _on_edge(nudged, ref)
            if edge is None:
                continue
            abnormal = c.applies == "baseline_abnormal"
            for value in (np.nextafter(edge, -np.inf), edge, np.nextafter(edge, np.inf)):
                s = f"S{len(rows)}"
                rows.append((s, term.test, float(value), unit, lln, uln))
                baselines.append(
                    {
                        "subject_id": s,
                        "test": term.test,
                        "baseline": base,
                        "baseline_abnormal": abnormal,
                        "anticoagulated": c.applies == "anticoagulated",
                    }
                )
    obs = pd.DataFrame(rows, columns=["subject_id", "test", "value", "unit", "ref_low", "ref_high"])
    obs["qualifier"] = ""
    base_frame = pd.DataFrame(baselines)
    graded = derive_lab_grades(obs, baselines=base_frame)
    for i in range(len(obs)):
        row = obs.iloc[i]
        base = baselines[i]
        for direction in ("low", "high"):
            term = table.for_test(row["test"], direction)
            if term is None or not term.numeric:
                continue
            grade, _, _ = _scalar(row, term.term, direction, base)
            got = graded[f"grade_{direction}"].iloc[i]
            assert (None if got is pd.NA else int(got)) == grade, (i, term.term, row.to_dict())
    assert len(obs) > 300
