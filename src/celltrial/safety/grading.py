"""CTCAE lab grading: one value (:func:`grade_lab`, :func:`explain_grade`), arrays
(:func:`compute_lab_grades`) and the observation frame (:func:`derive_lab_grades`).

Grades are 0-4 or None ("not gradable": unit not convertible, LLN/ULN or baseline missing where
the grade depends on it, value at a reporting limit). ``lln``/``uln``/``baseline`` are always in
the unit of the value; thresholds are converted to that unit, never the other way round, and a
unit that cannot be converted makes the value not gradable rather than guessed.

``baseline_abnormal`` means "the baseline was outside the normal range on the side of the term"
(above ULN for ALT, below LLN for fibrinogen). When it is not given it is derived from
``baseline`` and the limits; when that is impossible, grades that depend on it are not gradable
(a value that no baseline could push up still grades 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import DataError, UnitError
from celltrial.frames import check_columns
from celltrial.safety.criteria import (
    CompiledTerm,
    CriteriaTable,
    TermCriteria,
    load_ctcae_criteria,
)
from celltrial.safety.evaluate import (
    R_CLINICAL,
    R_QUALIFIER,
    R_UNIT,
    REASONS,
    Evaluation,
    LabInputs,
    evaluate,
)

__all__ = [
    "GradeExplanation",
    "compute_lab_grades",
    "derive_lab_grades",
    "explain_grade",
    "grade_lab",
]


@dataclass(frozen=True)
class GradeExplanation:
    """Why a value got its grade: the matched rule, or the reason it is not gradable."""

    term: str
    ctcae_term: str
    version: str
    value: float
    unit: str
    grade: int | None
    rule: str | None  # matched criterion and the CTCAE text of its grade
    reason: str | None  # why not gradable (None when graded)
    lab_part_only: bool  # the grade also has clinical parts the value cannot show
    clinical_part: str
    notes: tuple[str, ...] = ()


def _one(x: float | None) -> np.ndarray:
    return np.array([np.nan if x is None else float(x)])


def explain_grade(
    term: str,
    value: float,
    unit: str,
    *,
    lln: float | None = None,
    uln: float | None = None,
    baseline: float | None = None,
    baseline_abnormal: bool | None = None,
    anticoagulated: bool = False,
    qualifier: str = "",
    criteria: CriteriaTable | None = None,
) -> GradeExplanation:
    """Grade one value of ``term`` and say which rule matched or why it is not gradable."""
    table = criteria or load_ctcae_criteria()
    tc = table.term(term)

    def result(grade: int | None, **kw: object) -> GradeExplanation:
        return GradeExplanation(
            term=tc.term,
            ctcae_term=tc.ctcae_term,
            version=tc.version,
            value=float(value),
            unit=unit,
            grade=grade,
            **kw,  # type: ignore[arg-type]
        )

    if not tc.numeric:
        text = "; ".join(f"G{r.grade}: {r.ctcae_text}" for r in tc.grades)
        return result(
            None,
            rule=None,
            reason=f"{REASONS[R_CLINICAL]} — {text}",
            lab_part_only=False,
            clinical_part="",
        )
    try:
        compiled = table.compile(tc, unit)
    except UnitError as exc:
        return result(
            None,
            rule=None,
            reason=f"{REASONS[R_UNIT]}: {exc}",
            lab_part_only=False,
            clinical_part="",
        )
    inputs = LabInputs(
        value=_one(value),
        lln=_one(lln),
        uln=_one(uln),
        baseline=_one(baseline),
        baseline_abnormal=None if baseline_abnormal is None else _one(float(baseline_abnormal)),
        anticoagulated=np.array([bool(anticoagulated)]),
    )
    ev = evaluate(compiled, inputs, detail=True)
    below, above = _limit_sides(np.array([qualifier.strip()], dtype=object))
    _apply_qualifier(compiled, below, above, ev)
    notes = _ignored_notes(compiled, baseline) + tuple(
        dict.fromkeys(r.note for r in tc.grades if r.note)
    )
    if not ev.gradable[0]:
        return result(
            None,
            rule=None,
            reason=REASONS[int(ev.reason[0])],
            lab_part_only=False,
            clinical_part="",
            notes=notes,
        )
    grade = int(ev.grade[0])
    if grade == 0:
        return result(
            0,
            rule="no grade criterion met",
            reason=None,
            lab_part_only=False,
            clinical_part="",
            notes=notes,
        )
    rc = compiled.criteria[int(ev.matched[0])]  # type: ignore[index]
    rule = next(r for r in tc.grades if r.grade == grade)
    return result(
        grade,
        rule=f"Grade {grade}: {compiled.describe(rc)} [CTCAE v{tc.version}: {rule.ctcae_text}]",
        reason=None,
        lab_part_only=bool(rule.clinical_part),
        clinical_part=rule.clinical_part,
        notes=notes,
    )


def grade_lab(
    term: str,
    value: float,
    unit: str,
    *,
    lln: float | None = None,
    uln: float | None = None,
    baseline: float | None = None,
    baseline_abnormal: bool | None = None,
    anticoagulated: bool = False,
    qualifier: str = "",
    criteria: CriteriaTable | None = None,
) -> int | None:
    """CTCAE grade (0-4) of one lab value of ``term``, or None when it is not gradable.

    ``lln``/``uln``/``baseline`` are in ``unit``. See :func:`explain_grade` for the why.
    """
    return explain_grade(
        term,
        value,
        unit,
        lln=lln,
        uln=uln,
        baseline=baseline,
        baseline_abnormal=baseline_abnormal,
        anticoagulated=anticoagulated,
        qualifier=qualifier,
        criteria=criteria,
    ).grade


def _ignored_notes(compiled: CompiledTerm, baseline: float | None) -> tuple[str, ...]:
    if baseline is not None:
        return ()
    ignored = [
        compiled.describe(rc)
        for rc in compiled.criteria
        if rc.criterion.if_missing == "ignore" and rc.criterion.kind in ("x_baseline", "pct_change")
    ]
    return tuple(f"baseline not given: '{text}' not evaluated" for text in ignored)


def compute_lab_grades(
    term: str,
    values: np.ndarray,
    unit: str,
    *,
    lln: np.ndarray | float | None = None,
    uln: np.ndarray | float | None = None,
    baseline: np.ndarray | float | None = None,
    baseline_abnormal: np.ndarray | None = None,
    anticoagulated: np.ndarray | bool | None = None,
    criteria: CriteriaTable | None = None,
) -> pd.arrays.IntegerArray:
    """Grades of an array of values of one term in one unit (nullable Int8; NA = not gradable).

    Raises :class:`UnitError` when ``unit`` cannot be converted for this term.
    """
    table = criteria or load_ctcae_criteria()
    tc = table.term(term)
    values = np.asarray(values, dtype=np.float64)
    n = len(values)

    def arr(x: np.ndarray | float | None) -> np.ndarray | None:
        if x is None:
            return None
        return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))

    if not tc.numeric:
        return pd.arrays.IntegerArray(np.zeros(n, np.int8), np.ones(n, dtype=bool))
    compiled = table.compile(tc, unit)
    inputs = LabInputs(
        value=values,
        lln=np.full(n, np.nan) if lln is None else arr(lln),
        uln=np.full(n, np.nan) if uln is None else arr(uln),
        baseline=arr(baseline),
        baseline_abnormal=arr(baseline_abnormal),
        anticoagulated=None if anticoagulated is None else np.broadcast_to(anticoagulated, (n,)),
    )
    ev = evaluate(compiled, inputs)
    return pd.arrays.IntegerArray(ev.grade, ~ev.gradable)


def _limit_sides(qualifier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(below-a-limit, above-a-limit) masks of qualifier texts."""
    return np.isin(qualifier, ("<", "<=")), np.isin(qualifier, (">", ">="))


def _apply_qualifier(
    compiled: CompiledTerm, below: np.ndarray, above: np.ndarray, ev: Evaluation
) -> None:
    """Values at a reporting limit ("<0.1", ">1000") keep their grade only when it is certain.

    A value below a limit on the side of the term ("<0.1" for a low term) can only be worse: its
    grade is certain when it is already the highest lab grade. On the other side it can only be
    better: certain when it is 0. Otherwise it is not gradable.
    """
    if not (below.any() or above.any()):
        return
    worse, better = (below, above) if compiled.term.direction == "low" else (above, below)
    top = max(rc.grade for rc in compiled.criteria)
    uncertain = ev.gradable & ((worse & (ev.grade < top)) | (better & (ev.grade > 0)))
    ev.gradable[uncertain] = False
    ev.grade[uncertain] = 0
    ev.reason[uncertain] = R_QUALIFIER
    if ev.matched is not None:
        ev.matched[uncertain] = -1


# --- the observation frame ------------------------------------------------------------------

_REQUIRED = ("subject_id", "test", "value", "unit", "ref_low", "ref_high")
_NOT_GRADABLE, _NO_TERM = 5, 6  # packed grade codes beside 0-4
_BASELINE_REQUIRED = ("subject_id", "test", "baseline")


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and uniques of a column (free for categoricals)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), pd.Index(column.cat.categories)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes, pd.Index(uniques)


def _floats(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class _BaselineTable:
    """Baseline facts in dense subject × test tables, looked up per group of rows."""

    subj_codes: np.ndarray
    n_test: int
    tables: dict[str, np.ndarray]  # LabInputs field → flat table (last cell: not found)

    def lookup(self, subj: np.ndarray, test_code: int) -> dict[str, np.ndarray]:
        """Baseline arrays for rows of subjects ``subj`` (codes) and one test."""
        key = np.where(subj >= 0, subj * self.n_test + test_code, -1)
        out = {name: table[key] for name, table in self.tables.items()}
        if "anticoagulated" in out:
            out["anticoagulated"] = out["anticoagulated"] > 0.5  # NaN (unknown) → not on it
        return out


def _baseline_table(
    baselines: pd.DataFrame,
    subj_codes: np.ndarray,
    subj_index: pd.Index,
    test_index: pd.Index,
) -> _BaselineTable:
    check_columns(baselines, _BASELINE_REQUIRED, what="baselines")
    duplicated = baselines.duplicated(["subject_id", "test"], keep=False)
    if duplicated.any():
        pairs = baselines.loc[duplicated, ["subject_id", "test"]].drop_duplicates()
        raise DataError(
            "baselines frame has several rows for subject/test "
            f"{list(pairs.itertuples(index=False, name=None))[:5]}"
        )
    bs = subj_index.get_indexer(baselines["subject_id"].astype(object))
    bt = test_index.get_indexer(baselines["test"].astype(object))
    keep = (bs >= 0) & (bt >= 0)
    n_test = max(len(test_index), 1)
    size = max(len(subj_index), 1) * n_test + 1
    fields = {
        "baseline": "baseline",
        "baseline_abnormal": "baseline_abnormal",
        "ref_low": "baseline_lln",
        "ref_high": "baseline_uln",
        "anticoagulated": "anticoagulated",
    }
    tables: dict[str, np.ndarray] = {}
    for column, name in fields.items():
        if column in baselines.columns:
            table = np.full(size, np.nan)
            column_values = _floats(baselines[column].astype("Float64"))
            table[(bs * n_test + bt)[keep]] = column_values[keep]
            tables[name] = table
    return _BaselineTable(subj_codes=subj_codes, n_test=n_test, tables=tables)


def derive_lab_grades(
    observations: pd.DataFrame,
    *,
    criteria: CriteriaTable | None = None,
    baselines: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A new frame: ``observations`` plus CTCAE grades of each row, low and high side.

    Added columns: ``grade_low``/``grade_high`` (nullable Int8), ``term_low``/``term_high`` (the
    CTCAE term, categorical; NA when the test has no numeric term on that side, e.g. D-dimer),
    ``reason_low``/``reason_high`` (why a row with a term is not gradable). ``value``/``unit``
    must be the canonical ones; ``ref_low``/``ref_high`` are the LLN/ULN; an optional
    ``qualifier`` column marks values at reporting limits.

    ``baselines`` (one row per subject and test): ``subject_id``, ``test``, ``baseline`` and
    optionally ``ref_low``/``ref_high`` (the baseline sample's range), ``baseline_abnormal`` and
    ``anticoagulated`` (for INR).

    Vectorised per term: rows are grouped once by (test, unit) and each group is graded with
    numpy. Categorical ``test``/``unit``/``subject_id`` columns are fastest (no factorising);
    a frame already ordered by test skips the sort.
    """
    check_columns(observations, _REQUIRED, what="observation")
    table = criteria or load_ctcae_criteria()
    n = len(observations)
    test_codes, test_index = _codes(observations["test"])
    unit_codes, unit_index = _codes(observations["unit"])
    values = _floats(observations["value"])
    lln = _floats(observations["ref_low"])
    uln = _floats(observations["ref_high"])
    base: _BaselineTable | None = None
    if baselines is not None:
        subj_codes, subj_index = _codes(observations["subject_id"])
        base = _baseline_table(baselines, subj_codes, subj_index, test_index)
    limit_sides = _qualifier_sides(observations)

    # per test code: its low and high term (numeric ones only); term codes per row via a LUT
    sides: dict[str, list[TermCriteria | None]] = {}
    for direction in ("low", "high"):
        found = [table.for_test(str(code), direction) for code in test_index]
        sides[direction] = [t if t is not None and t.numeric else None for t in found]
    term_names = sorted({t.ctcae_term for s in sides.values() for t in s if t is not None})
    position = {name: i for i, name in enumerate(term_names)}

    # Rows are sorted once by (test, unit): each group is then a contiguous slice (views, no
    # copies), and the results of both sides travel back in one packed uint16 array.
    n_units = len(unit_index) + 1
    key = test_codes.astype(np.int32) * n_units + (unit_codes.astype(np.int32) + 1)
    if (len(test_index) + 1) * n_units < np.iinfo(np.int16).max:
        key = key.astype(np.int16)  # a 16-bit key sorts by radix: ~8x faster
    if n < 2 or bool((key[1:] >= key[:-1]).all()):
        order = None  # already grouped (e.g. the store's order): slices of the columns as is
        sorted_key, s_values, s_lln, s_uln = key, values, lln, uln
    else:
        order = np.argsort(key, kind="stable")
        sorted_key = key.take(order)
        s_values, s_lln, s_uln = values.take(order), lln.take(order), uln.take(order)

    def in_order(column: np.ndarray, part: slice) -> np.ndarray:
        return column[part] if order is None else column.take(order[part])

    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1] if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n] if n else np.zeros(0, np.int64)
    packed = np.full(n, _pack(_NO_TERM, _NO_TERM, 0, 0), dtype=np.uint16)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        code, ucode = divmod(int(sorted_key[start]), n_units)
        if code < 0 or (sides["low"][code] is None and sides["high"][code] is None):
            continue
        unit = "" if ucode == 0 else str(unit_index[ucode - 1])
        part = slice(start, end)
        plain = LabInputs(value=s_values[part], lln=s_lln[part], uln=s_uln[part])
        with_base = None
        codes, reasons = [], []
        for direction in ("low", "high"):
            term = sides[direction][code]
            if term is None:
                codes.append(_NO_TERM)
                reasons.append(0)
                continue
            try:
                compiled = table.compile(term, unit)
            except UnitError:
                codes.append(_NOT_GRADABLE)
                reasons.append(R_UNIT)
                continue
            inputs = plain
            if base is not None and _uses_baseline(compiled):
                if with_base is None:
                    with_base = LabInputs(
                        value=plain.value,
                        lln=plain.lln,
                        uln=plain.uln,
                        **base.lookup(in_order(base.subj_codes, part), code),
                    )
                inputs = with_base
            ev = evaluate(compiled, inputs)
            if limit_sides is not None:
                below, above = limit_sides
                _apply_qualifier(compiled, in_order(below, part), in_order(above, part), ev)
            # not gradable → code 5 (grade is 0 there): grade + 5 * not_gradable
            codes.append(ev.grade.view(np.uint8) + (~ev.gradable).view(np.uint8) * np.uint8(5))
            reasons.append(ev.reason)
        packed[part] = _pack(*codes, *reasons)
    if order is None:
        packed_rows = packed
    else:
        packed_rows = np.empty_like(packed)
        packed_rows[order] = packed

    result = observations.copy(deep=False)
    reason_categories = list(REASONS[1:])
    for shift, direction in ((0, "low"), (3, "high")):
        side = (packed_rows >> shift) & 7
        reason = ((packed_rows >> (6 + 4 * (shift // 3))) & 15).astype(np.int8)
        na = side >= _NOT_GRADABLE
        grade = (side * ~na).astype(np.int8)
        lut = np.array(
            [-1 if t is None else position[t.ctcae_term] for t in sides[direction]] + [-1],
            dtype=np.int16,
        )  # the last slot answers code -1 (missing test)
        result[f"grade_{direction}"] = pd.arrays.IntegerArray(grade, na)
        result[f"term_{direction}"] = pd.Categorical.from_codes(
            lut[test_codes], categories=term_names
        )
        result[f"reason_{direction}"] = pd.Categorical.from_codes(
            reason - 1, categories=reason_categories
        )
    return result


def _pack(
    low: np.ndarray | int,
    high: np.ndarray | int,
    reason_low: np.ndarray | int,
    reason_high: np.ndarray | int,
) -> np.ndarray | int:
    """Grade codes (0-4, 5 not gradable, 6 no term) and reasons of both sides in 14 bits."""

    def u16(x: np.ndarray | int) -> np.ndarray | int:
        return x.astype(np.uint16) if isinstance(x, np.ndarray) else x

    return u16(low) | (u16(high) << 3) | (u16(reason_low) << 6) | (u16(reason_high) << 10)


def _uses_baseline(compiled: CompiledTerm) -> bool:
    return any(
        rc.criterion.kind in ("x_baseline", "pct_change") or rc.criterion.applies != "always"
        for rc in compiled.criteria
    )


def _qualifier_sides(observations: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(below-a-limit, above-a-limit) masks of the qualifier column, None when none is set."""
    if "qualifier" not in observations.columns:
        return None
    codes, uniques = _codes(observations["qualifier"])
    texts = np.array([str(q).strip() for q in uniques] + [""], dtype=object)
    below, above = _limit_sides(texts)  # the last slot answers code -1 (missing)
    if not (below.any() or above.any()):
        return None
    return below[codes], above[codes]
