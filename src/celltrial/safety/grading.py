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

The conventions of ``criteria/conventions.yaml`` apply (:mod:`celltrial.safety.conventions`):
without a baseline (neither its value nor its status known) those terms are graded as if it had
been normal, and the result says so (``assumed_normal_baseline``); a value taken at or before the
first infusion (``before_first_infusion``) is graded against LLN/ULN, without the baseline
clauses, where the term's convention says ``limits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import DataError, UnitError
from celltrial.frames import check_columns
from celltrial.safety import kernel
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
    assumed_normal_baseline: bool = False  # graded as if the missing baseline had been normal


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
    before_first_infusion: bool = False,
    qualifier: str = "",
    criteria: CriteriaTable | None = None,
) -> GradeExplanation:
    """Grade one value of ``term`` and say which rule matched or why it is not gradable.

    ``before_first_infusion``: the value was taken at or before the first infusion (the baseline
    value itself, say): graded without the baseline clauses where the conventions say so."""
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
        before_first_infusion=np.array([bool(before_first_infusion)]),
    )
    ev = evaluate(compiled, inputs, detail=True)
    below, above = _limit_sides(np.array([qualifier.strip()], dtype=object))
    _apply_qualifier(compiled, below, above, ev)
    assumed = ev.assumed is not None and bool(ev.assumed[0] and ev.gradable[0])
    notes = (
        _convention_notes(tc, before_first_infusion, assumed)
        + _ignored_notes(compiled, baseline, before_first_infusion)
        + tuple(dict.fromkeys(r.note for r in tc.grades if r.note))
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
            assumed_normal_baseline=assumed,
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
        assumed_normal_baseline=assumed,
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
    before_first_infusion: bool = False,
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
        before_first_infusion=before_first_infusion,
        qualifier=qualifier,
        criteria=criteria,
    ).grade


def _convention_notes(tc: TermCriteria, before: bool, assumed: bool) -> tuple[str, ...]:
    """What the conventions of ``conventions.yaml`` did to this value, if anything."""
    notes = []
    if before and tc.before_first_infusion == "limits" and tc.has_baseline_clauses:
        notes.append(
            "taken at or before the first infusion: graded against LLN/ULN, without the "
            "baseline clauses (conventions.yaml, baseline.before_first_infusion)"
        )
    if assumed:
        notes.append(
            "no baseline: graded as if the baseline had been normal (conventions.yaml, "
            "baseline.missing)"
        )
    return tuple(notes)


def _ignored_notes(
    compiled: CompiledTerm, baseline: float | None, before: bool = False
) -> tuple[str, ...]:
    if baseline is not None or (before and compiled.term.before_first_infusion == "limits"):
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
    before_first_infusion: np.ndarray | bool | None = None,
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
        before_first_infusion=(
            None
            if before_first_infusion is None
            else np.broadcast_to(np.asarray(before_first_infusion, dtype=bool), (n,))
        ),
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
_BASELINE_REQUIRED = ("subject_id", "test", "baseline")
_OUTPUT = (
    "grade_low",
    "term_low",
    "reason_low",
    "assumed_normal_baseline_low",
    "grade_high",
    "term_high",
    "reason_high",
    "assumed_normal_baseline_high",
)
_ASSUMED_BIT = np.uint8(0x80)  # of a side's byte: graded as if the missing baseline were normal


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
    """Baseline facts in dense (subject + 1) × test tables; cell ``(s + 1) * n_test + t``.

    The first ``n_test`` cells (subject code -1) are empty, so rows without a subject find
    nothing; so are the cells of subjects and tests the baselines frame does not list.
    """

    n_test: int
    tables: dict[str, np.ndarray]  # LabInputs field → flat table

    def index(self, subj: np.ndarray, test: np.ndarray) -> np.ndarray:
        idx = np.add(subj, 1, dtype=np.intp)
        idx *= self.n_test
        idx += test  # test code -1 only on rows without a term: never read for grading
        return idx

    def lookup(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """LabInputs baseline fields of rows at table cells ``idx``."""
        out = {name: table.take(idx, mode="clip") for name, table in self.tables.items()}
        if "anticoagulated" in out:
            out["anticoagulated"] = out["anticoagulated"] > 0.5  # NaN (unknown) → not on it
        return out

    def status(self, direction: str) -> np.ndarray | None:
        """Per cell, the baseline status on ``direction``'s side as evaluate() derives it.

        0 normal, 1 abnormal, 2 unknown, 3 missing (neither value nor status known); None when
        it depends on each row's own LLN/ULN (the baselines give neither a flag nor their own
        range).
        """
        base = self.tables["baseline"]
        if "baseline_abnormal" in self.tables:
            flag = self.tables["baseline_abnormal"]
            abnormal, unknown = flag == 1.0, np.isnan(flag)
        else:
            limit = self.tables.get("baseline_uln" if direction == "high" else "baseline_lln")
            if limit is None:
                return None
            abnormal = base > limit if direction == "high" else base < limit
            unknown = np.isnan(base) | np.isnan(limit)
        code = np.where(unknown, kernel.UNKNOWN, abnormal).astype(np.int8)
        code[unknown & np.isnan(base)] = kernel.MISSING
        return code


def _baseline_table(
    baselines: pd.DataFrame, subj_index: pd.Index, test_index: pd.Index
) -> _BaselineTable:
    check_columns(baselines, _BASELINE_REQUIRED, what="baselines")
    s_codes, s_uniques = pd.factorize(baselines["subject_id"], use_na_sentinel=False)
    t_codes, _ = pd.factorize(baselines["test"], use_na_sentinel=False)
    pair = s_codes.astype(np.intp) * (int(t_codes.max(initial=0)) + 1) + t_codes
    if len(pair) and int(np.bincount(pair).max()) > 1:  # the message names them (slow path)
        duplicated = baselines.duplicated(["subject_id", "test"], keep=False)
        pairs = baselines.loc[duplicated, ["subject_id", "test"]].drop_duplicates()
        raise DataError(
            "baselines frame has several rows for subject/test "
            f"{list(pairs.itertuples(index=False, name=None))[:5]}"
        )
    bs = subj_index.get_indexer(pd.Index(s_uniques, dtype=object)).take(s_codes)
    bt = test_index.get_indexer(baselines["test"].astype(object))
    keep = (bs >= 0) & (bt >= 0)
    n_test = max(len(test_index), 1)
    size = (len(subj_index) + 1) * n_test
    cells = ((bs + 1) * n_test + bt)[keep]
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
            table[cells] = _floats(baselines[column].astype("Float64"))[keep]
            tables[name] = table
    return _BaselineTable(n_test=n_test, tables=tables)


def _regimes(
    conditions: dict[str, list[str | None]],
    assume: dict[str, list[bool]],
    test_codes: np.ndarray,
    base: _BaselineTable | None,
    cells: np.ndarray | None,
    lln: np.ndarray,
    uln: np.ndarray,
    subjectless: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each row's regime_low × 3 + regime_high (int8), None when no term has a condition; and
    which rows are graded on a missing baseline taken as normal (uint8 bits: 1 low side, 2 high
    side), None when none is.

    Per side: a term graded on the baseline status gets 0 (normal), 1 (abnormal) or 2 (unknown:
    evaluate() decides); a missing baseline is 0 and flagged where ``assume`` says so (the
    conventions), else 2. A term graded on anticoagulation gets 0 (off) or 1 (on).
    ``subjectless``: some rows have no subject (their cells are the first, always empty).
    """
    if not any(c in ("status", "anticoagulated") for cs in conditions.values() for c in cs):
        return None, None
    weight = {"low": kernel.SIDE_REGIMES, "high": 1}
    bit = {"low": np.uint8(1), "high": np.uint8(2)}
    n_test = len(conditions["low"])
    # per test code (+ the slot of code -1): the regime of a missing baseline, and its flag
    missing = {
        d: np.array([0 if a else kernel.UNKNOWN for a in assume[d]] + [0], np.int8)
        for d in conditions
    }
    flagged = {
        d: np.array(
            [a and c == "status" for a, c in zip(assume[d], conditions[d], strict=True)] + [False]
        )
        for d in conditions
    }
    if base is None or cells is None:  # no baselines: status missing, not on anticoagulation
        regime = np.zeros(n_test + 1, dtype=np.int8)  # the last slot answers code -1
        bits = np.zeros(n_test + 1, dtype=np.uint8)
        for direction, conds in conditions.items():
            for t, c in enumerate(conds):
                if c == "status":
                    regime[t] += missing[direction][t] * weight[direction]
            bits |= flagged[direction].view(np.uint8) * bit[direction]
        return regime.take(test_codes), (bits.take(test_codes) if bits.any() else None)
    cell_regime = np.zeros(len(base.tables["baseline"]), dtype=np.int8)
    cell_bits = np.zeros(len(cell_regime), dtype=np.uint8)
    test_of_cell = np.arange(len(cell_regime)) % base.n_test
    per_row: list[tuple[str, list[bool]]] = []  # sides whose status depends on each row's range
    anticoagulated = base.tables.get("anticoagulated")
    on = (anticoagulated > 0.5).astype(np.int8) if anticoagulated is not None else None
    for direction, conds in conditions.items():
        status = base.status(direction)
        uses_status = [c == "status" for c in conds]
        uses_anticoag = np.array([c == "anticoagulated" for c in conds] + [False])
        if any(uses_status):
            if status is None:
                per_row.append((direction, uses_status))
            else:
                absent = status == kernel.MISSING
                tests = test_of_cell[absent]
                status[absent] = missing[direction][:-1][tests]
                cell_bits[absent] |= flagged[direction][:-1][tests].view(np.uint8) * bit[direction]
                mask = np.array([*uses_status, False])[test_of_cell]
                cell_regime += status * mask * np.int8(weight[direction])
        if uses_anticoag.any() and on is not None:
            cell_regime += on * uses_anticoag[test_of_cell] * np.int8(weight[direction])
    regime = cell_regime.take(cells, mode="clip")
    flagged_cells = cell_bits[base.n_test :].any() or (subjectless and cell_bits.any())
    bits = cell_bits.take(cells, mode="clip") if flagged_cells else None
    if per_row:  # status from the baseline and each row's own LLN/ULN
        b = base.tables["baseline"].take(cells, mode="clip")
        absent = np.isnan(b)
        for direction, uses_status in per_row:
            limit = uln if direction == "high" else lln
            abnormal = b > limit if direction == "high" else b < limit
            code = np.where(np.isnan(limit), kernel.UNKNOWN, abnormal).astype(np.int8)
            code[absent] = missing[direction].take(test_codes[absent])
            code *= np.array([*uses_status, False], np.int8).take(test_codes)
            regime += code * np.int8(weight[direction])
            side_bits = absent & flagged[direction].take(test_codes)
            if side_bits.any():
                bits = np.zeros(len(b), dtype=np.uint8) if bits is None else bits
                bits |= side_bits.view(np.uint8) * bit[direction]
    return regime, bits


def _before_first_infusion(
    observations: pd.DataFrame,
    first_infusion: pd.Series,
    subj_codes: np.ndarray,
    subj_index: pd.Index,
) -> np.ndarray:
    """Which rows were taken at or before their subject's first infusion (or have none yet):
    the complement of ``after_first_infusion`` (:func:`~celltrial.safety.tables.
    derive_first_infusion_flag`)."""
    check_columns(observations, ("time",), what="observation")
    time = observations["time"]
    if not isinstance(time.dtype, pd.DatetimeTZDtype):
        time = pd.to_datetime(time, utc=True)
    unit = f"datetime64[{time.dtype.unit}]"
    first = pd.to_datetime(first_infusion, utc=True)
    if not first.index.is_unique:
        raise DataError("first_infusion: a subject appears twice; give one first infusion each")
    per_subject = first.reindex(subj_index.astype(object)).to_numpy(dtype=unit)
    per_subject = np.append(per_subject, np.datetime64("NaT"))  # code -1: no subject
    with np.errstate(invalid="ignore"):  # aware times as UTC datetime64: no copy
        after = time.to_numpy(dtype=unit) > per_subject.take(subj_codes)  # NaT: not after
    return ~after


def _group_order(pkey: np.ndarray, n_groups: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(row order that groups rows by pkey, or None when they already are; rows per pkey).

    A counting sort (pandas' groupsort, O(n)); numpy's stable argsort where it is missing.
    """
    n = len(pkey)
    if n < 2 or bool((pkey[1:] >= pkey[:-1]).all()):
        return None, np.bincount(pkey, minlength=n_groups)
    try:
        from pandas._libs.algos import groupsort_indexer
    except ImportError:  # pragma: no cover - pandas without the private counting sort
        return np.argsort(pkey, kind="stable"), np.bincount(pkey, minlength=n_groups)
    order, counts = groupsort_indexer(pkey, n_groups)
    return order, counts[1:]  # counts[0]: label -1, never used


def derive_lab_grades(
    observations: pd.DataFrame,
    *,
    criteria: CriteriaTable | None = None,
    baselines: pd.DataFrame | None = None,
    first_infusion: pd.Series | None = None,
) -> pd.DataFrame:
    """A new frame: ``observations`` plus CTCAE grades of each row, low and high side.

    Added columns: ``grade_low``/``grade_high`` (nullable Int8), ``term_low``/``term_high`` (the
    CTCAE term, categorical; NA when the test has no numeric term on that side, e.g. D-dimer),
    ``reason_low``/``reason_high`` (why a row with a term is not gradable),
    ``assumed_normal_baseline_low``/``_high`` (bool: graded as if the subject's missing baseline
    had been normal, conventions.yaml ``baseline.missing``). ``value``/``unit`` must be the
    canonical ones; ``ref_low``/``ref_high`` are the LLN/ULN; an optional ``qualifier`` column
    marks values at reporting limits.

    ``baselines`` (one row per subject and test): ``subject_id``, ``test``, ``baseline`` and
    optionally ``ref_low``/``ref_high`` (the baseline sample's range), ``baseline_abnormal`` and
    ``anticoagulated`` (for INR). ``first_infusion`` (subject → time, as
    :func:`~celltrial.store.frames.first_infusions` gives it): rows taken at or before it, and all
    rows of subjects without one, are graded without the baseline clauses where the conventions
    say ``limits`` (needs a ``time`` column); without it every row is graded as a value after
    the baseline.

    Vectorised per term: rows are grouped by test, unit and the baseline condition their terms
    depend on (a counting sort; the columns are scattered into group order, cheaper than
    gathering them), and each group is graded on both sides with scalar thresholds, only the
    criteria its terms have (:mod:`celltrial.safety.kernel`). Groups that need more of the "not
    gradable" logic than a missing value or LLN/ULN are graded by
    :func:`~celltrial.safety.evaluate.evaluate`, the engine of :func:`grade_lab`. Categorical
    ``test``/``unit``/``subject_id`` columns are fastest (no factorising).
    """
    check_columns(observations, _REQUIRED, what="observation")
    table = criteria or load_ctcae_criteria()
    n = len(observations)
    test_codes, test_index = _codes(observations["test"])
    unit_codes, unit_index = _codes(observations["unit"])
    values = _floats(observations["value"])
    lln = _floats(observations["ref_low"])
    uln = _floats(observations["ref_high"])

    # per test code: its low and high term (numeric ones only) and what they depend on
    sides: dict[str, list[TermCriteria | None]] = {}
    for direction in ("low", "high"):
        found = [table.for_test(str(code), direction) for code in test_index]
        sides[direction] = [t if t is not None and t.numeric else None for t in found]
    term_names = sorted({t.ctcae_term for s in sides.values() for t in s if t is not None})
    position = {name: i for i, name in enumerate(term_names)}
    conditions = {
        d: [None if t is None else kernel.condition(t) for t in s] for d, s in sides.items()
    }
    assume = {d: [t is not None and t.assume_normal_baseline for t in s] for d, s in sides.items()}
    limits = {  # sides whose values before the first infusion lose their baseline clauses
        d: [
            t is not None
            and t.before_first_infusion == "limits"
            and (t.has_baseline_clauses or kernel.condition(t) is not None)
            for t in s
        ]
        for d, s in sides.items()
    }

    # one key per (test, unit): (test code + 1) × (units + 1) + unit code + 1, never negative;
    # pkey = before × keys × 9 + key × 9 + the regime of each side (kernel), on a narrow type
    n_units = len(unit_index) + 1
    n_keys = (len(test_index) + 1) * n_units
    n_groups = 2 * n_keys * kernel.REGIMES
    small = np.int16 if n_groups < np.iinfo(np.int16).max else np.intp
    pkey = np.add(test_codes, 1, dtype=small)
    pkey *= small(n_units)
    pkey += unit_codes
    pkey += small(1)
    pkey *= small(kernel.REGIMES)

    base: _BaselineTable | None = None
    cells: np.ndarray | None = None
    subj_codes: np.ndarray | None = None
    before: np.ndarray | None = None
    uses_baselines = any(
        c is not None or _has_baseline_criteria(t)
        for d in ("low", "high")
        for c, t in zip(conditions[d], sides[d], strict=True)
    )
    if uses_baselines and (baselines is not None or first_infusion is not None):
        subj_codes, subj_index = _codes(observations["subject_id"])
        if baselines is not None:
            base = _baseline_table(baselines, subj_index, test_index)
            cells = base.index(subj_codes, test_codes)
        if first_infusion is not None and any(limits["low"] + limits["high"]):
            before = _before_first_infusion(observations, first_infusion, subj_codes, subj_index)
    subjectless = subj_codes is not None and bool((subj_codes < 0).any())
    regime, assumed_bits = _regimes(
        conditions, assume, test_codes, base, cells, lln, uln, subjectless
    )
    del cells  # memory touched for the first time is slow here: keep few large arrays alive
    if before is not None and not before.any():
        before = None
    if before is not None:  # their own pkeys; the plans ignore the regime of "limits" sides
        if assumed_bits is not None:  # graded on the limits by rule, not on an assumption
            assumed_bits *= (~before).view(np.uint8)
        pkey += np.multiply(before.view(np.uint8), n_keys * kernel.REGIMES, dtype=small)
        del before
    else:
        n_groups //= 2  # no value before a first infusion: half the pkey range
    if regime is not None:
        pkey += regime
        del regime
    pkey = pkey.astype(np.intp, copy=False)

    order, counts = _group_order(pkey, n_groups)
    test_of_key = [k // n_units - 1 for k in range(n_keys)]
    present = np.flatnonzero(counts)
    present_keys = sorted({kernel.key_of(int(p), n_keys) for p in present.tolist()})
    units = {k: "" if k % n_units == 0 else str(unit_index[k % n_units - 1]) for k in present_keys}
    plans = tuple(
        kernel.plan_side(
            table,
            direction,
            {
                k: term
                for k in present_keys
                if k >= n_units and (term := sides[direction][k // n_units - 1]) is not None
            },
            units,
            n_keys,
            position,
            present=frozenset(present.tolist()),
        )
        for direction in ("low", "high")
    )
    # categorical codes of each row's term (-1: none), from a small table per group
    code_type = np.int8 if len(term_names) < np.iinfo(np.int8).max else np.int16
    terms = [((plan.info & kernel.TERM_BITS).astype(code_type) - 1).take(pkey) for plan in plans]

    # the columns in group order: scattered (sequential reads), not gathered
    limit_sides = _qualifier_sides(observations)
    pos: np.ndarray | None = None
    if order is None:
        g_values, g_lln, g_uln = values, lln, uln
    else:  # memory first touched is slow here: pos, values and LLN reuse three intp arrays
        pos = pkey  # the inverse of order
        rank = np.arange(n)
        pos[order] = rank
        g_values, g_lln = order.view(np.float64), rank.view(np.float64)
        g_values[pos] = values
        g_lln[pos] = lln
        g_uln = _grouped(uln, pos)
        del order, rank
    del pkey
    # rows (in group order) without a value, an LLN or a ULN: one scan of the three columns;
    # each group then finds its own rows by bisection instead of scanning its rows
    nan_bits = np.isnan(g_values).view(np.uint8)
    nan_bits |= np.isnan(g_lln).view(np.uint8) << np.uint8(1)
    nan_bits |= np.isnan(g_uln).view(np.uint8) << np.uint8(2)
    any_nan = np.flatnonzero(nan_bits)
    bits_at = nan_bits.take(any_nan)
    del nan_bits
    missing_rows = {
        name: any_nan[(bits_at & np.uint8(bit)) > 0]
        for name, bit in (("value", 1), ("lln", 2), ("uln", 4))
    }
    del any_nan, bits_at
    g_subj = None if base is None or subj_codes is None else _grouped(subj_codes, pos)
    g_limits = None if limit_sides is None else tuple(_grouped(x, pos) for x in limit_sides)

    # per row and side one byte: grade code (bits 0-2: 0-4, NOT_GRADABLE, NO_TERM), reason (3-6),
    # graded on a missing baseline taken as normal (bit 7, by evaluate(); else assumed_bits)
    packed = np.full(n, kernel.NO_TERM | (kernel.NO_TERM << 8), dtype=np.uint16)
    any_assumed = False  # whether some row got the assumed-normal-baseline bit
    ends = np.cumsum(counts)
    for p in present.tolist():
        start, end = int(ends[p] - counts[p]), int(ends[p])
        part = slice(start, end)
        value, low, high = g_values[part], g_lln[part], g_uln[part]
        missing = {}
        for name, rows_ in missing_rows.items():
            lo, hi = np.searchsorted(rows_, (start, end))
            missing[name] = rows_[lo:hi] - start
        cell = b = None
        if (
            base is not None
            and g_subj is not None
            and any(kernel.uses_baseline(plan, p) for plan in plans)
        ):
            cell = base.index(g_subj[part], test_of_key[kernel.key_of(p, n_keys)])
            b = base.tables["baseline"].take(cell, mode="clip")
        side_bytes = []
        for plan in plans:
            found = kernel.grade_group(plan, p, value, low, high, b, missing)
            assumed: np.ndarray | bool = False  # status terms: flagged from assumed_bits
            if found is None:
                if cell is None and base is not None and g_subj is not None:
                    cell = base.index(g_subj[part], test_of_key[kernel.key_of(p, n_keys)])
                code, reason, assumed = _evaluate_group(
                    plan, p, n_keys, value, low, high, base, cell
                )
            else:
                code, reason = found
            if g_limits is not None and bool(code.size) and int(code.min()) < kernel.NO_TERM:
                below, above = (x[part] for x in g_limits)
                kernel.apply_qualifier(plan, p, code, reason, below, above)
            reason <<= 3
            reason |= code
            if assumed is not False and bool(code.size):  # the flag, on graded rows only
                reason |= (assumed & (code < kernel.NOT_GRADABLE)).view(np.uint8) * _ASSUMED_BIT
                any_assumed = True
            side_bytes.append(reason)
        packed[part] = side_bytes[0] | (side_bytes[1].astype(np.uint16) << 8)
    packed = packed if pos is None else packed.take(pos)

    columns: dict[str, object] = {}
    reason_categories = list(REASONS[1:])
    no_flag: np.ndarray | None = None
    for byte, plan, term in zip(
        (packed.astype(np.uint8), (packed >> 8).astype(np.uint8)), plans, terms, strict=True
    ):
        if any_assumed:  # flagged by evaluate() (terms it grades)
            flag = byte >= _ASSUMED_BIT
            byte &= np.uint8(0x7F)
        else:  # one array of False for both sides (pandas copies before any write)
            no_flag = np.zeros(n, dtype=bool) if no_flag is None else no_flag
            flag = no_flag
        grade = byte & np.uint8(7)
        na = grade >= kernel.NOT_GRADABLE
        if assumed_bits is not None:  # status terms on a missing baseline, graded rows only
            side_bit = np.uint8(1 if plan.direction == "low" else 2)
            flag = flag | (((assumed_bits & side_bit) > 0) & ~na)
        columns[f"assumed_normal_baseline_{plan.direction}"] = flag
        grade *= (~na).view(np.uint8)
        byte >>= 3
        reason = byte.view(np.int8)
        reason -= 1
        grade = grade.view(np.int8)
        columns[f"grade_{plan.direction}"] = pd.arrays.IntegerArray(grade, na)
        columns[f"term_{plan.direction}"] = pd.Categorical.from_codes(
            term, categories=term_names, validate=False
        )
        columns[f"reason_{plan.direction}"] = pd.Categorical.from_codes(
            reason, categories=reason_categories, validate=False
        )
    columns = {name: columns[name] for name in _OUTPUT}
    if any(name in observations.columns for name in _OUTPUT):
        return observations.assign(**columns)
    added = pd.DataFrame(columns, index=observations.index, copy=False)
    return pd.concat([observations, added], axis=1)


def _grouped(column: np.ndarray, pos: np.ndarray | None) -> np.ndarray:
    """``column`` in group order: row i goes to position ``pos[i]`` (a scatter)."""
    if pos is None:
        return column
    out = np.empty_like(column)
    out[pos] = column
    return out


def _has_baseline_criteria(term: TermCriteria | None) -> bool:
    return term is not None and any(
        c.kind in ("x_baseline", "pct_change") for r in term.grades for c in r.criteria
    )


def _evaluate_group(
    plan: kernel.SidePlan,
    p: int,
    n_keys: int,
    value: np.ndarray,
    lln: np.ndarray,
    uln: np.ndarray,
    base: _BaselineTable | None,
    cells: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | bool]:
    """Grade codes, reasons and the assumed-normal-baseline flags of one group on one side by
    evaluate() (the reference engine)."""
    compiled = plan.compiled[kernel.key_of(p, n_keys)]
    before = np.full(len(value), kernel.is_before(p, n_keys))
    inputs = LabInputs(value=value, lln=lln, uln=uln, before_first_infusion=before)
    if base is not None and cells is not None and _uses_baseline(compiled):
        inputs = LabInputs(
            value=value, lln=lln, uln=uln, before_first_infusion=before, **base.lookup(cells)
        )
    ev = evaluate(compiled, inputs)
    code = ev.grade.view(np.uint8) + (~ev.gradable).view(np.uint8) * np.uint8(kernel.NOT_GRADABLE)
    return code, ev.reason, (False if ev.assumed is None else ev.assumed)


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
