"""The vectorised core of lab grading: one compiled term over numpy arrays.

Three-valued logic keeps "not gradable" honest: each criterion is true, false or unknown (its
ULN/LLN/baseline is missing, or the baseline status it depends on is unknown). A row gets the
highest grade whose condition is true, unless some higher grade is unknown, in which case it is
not gradable and carries the reason of that unknown. Values exactly at a threshold are compared
with a relative tolerance of 1e-9, so ``3.0 × 40`` is "at" 120 whatever the float rounding.

Two conventions of ``conventions.yaml`` are applied here, as the term carries them
(:class:`~celltrial.safety.criteria.TermCriteria`): a term graded on the baseline status of a
subject without a baseline value is graded as if the baseline had been normal (those rows are
``assumed``), and values taken at or before the first infusion are graded without the baseline
clauses (as if the baseline had been normal and no anticoagulation given) when the term's rule
says ``limits``.

Speed: a value is divided once by each limit it is compared with (``value / ULN`` against the
multiples 1, 3, 5, 20), grades are written with ``np.copyto(where=…)``, and the bookkeeping of
unknowns runs only when some input of the term is actually missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from celltrial.safety.criteria import CompiledTerm, ResolvedCriterion

#: Reason codes of not-gradable rows (index into REASONS).
REASONS: tuple[str, ...] = (
    "",
    "value missing",
    "unit not convertible",
    "ULN missing",
    "LLN missing",
    "baseline missing",
    "baseline status unknown (baseline or its normal range missing)",
    "value at a reporting limit: grade uncertain",
    "no numeric criteria (clinical grading only)",
)
R_VALUE, R_UNIT, R_ULN, R_LLN, R_BASELINE, R_STATUS, R_QUALIFIER, R_CLINICAL = range(1, 9)

_EPS = 1e-9
_LIMIT = {"x_uln": "uln", "x_lln": "lln", "x_baseline": "baseline", "pct_change": "baseline"}
_BASELINE_KINDS = frozenset({"x_baseline", "pct_change"})
_LIMIT_REASON = {"uln": R_ULN, "lln": R_LLN, "baseline": R_BASELINE}


@dataclass
class LabInputs:
    """Arrays of one term's rows: values and limits in the value unit, baseline facts.

    ``baseline_abnormal`` is 1.0/0.0/NaN (unknown); when None it is derived from the baseline
    and ``baseline_lln``/``baseline_uln`` (the baseline sample's range, else the row's range).
    A baseline is *missing* where neither its value nor its status is known.
    ``before_first_infusion`` (bool): the value was taken at or before the first infusion.
    Limits are assumed non-negative (lab limits always are).
    """

    value: np.ndarray
    lln: np.ndarray
    uln: np.ndarray
    baseline: np.ndarray | None = None
    baseline_abnormal: np.ndarray | None = None
    baseline_lln: np.ndarray | None = None
    baseline_uln: np.ndarray | None = None
    anticoagulated: np.ndarray | None = None
    before_first_infusion: np.ndarray | None = None


@dataclass
class Evaluation:
    """Grades of one term: ``grade`` (int8), ``gradable`` (bool), ``reason`` (uint8 codes);
    ``assumed`` (bool or None for none): graded as if the missing baseline had been normal."""

    grade: np.ndarray
    gradable: np.ndarray
    reason: np.ndarray
    matched: np.ndarray | None = None  # index of the matched criterion, -1 for none
    assumed: np.ndarray | None = None


def _nudged(op: str, number: float) -> float:
    """``number`` moved by the tolerance so that a value "at" it compares as at it."""
    slack = _EPS * abs(number) if number else 1e-300
    return number + slack if op in (">", "<=") else number - slack


_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _factor(rc: ResolvedCriterion) -> float:
    """The multiple of the limit a ratio criterion compares with."""
    if rc.criterion.kind == "pct_change":
        return 1.0 + rc.number / 100.0
    return rc.number


class _Context:
    """Lazily computed arrays and masks shared by the criteria of one evaluation."""

    def __init__(self, compiled: CompiledTerm, inputs: LabInputs) -> None:
        self.compiled = compiled
        term = compiled.term
        self.x = inputs
        self.n = len(inputs.value)
        self._nan: dict[str, np.ndarray | None] = {}
        self._ratio: dict[str, np.ndarray] = {}
        self._gate: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._status: tuple[np.ndarray, np.ndarray | None] | None = None
        # rows graded without baseline clauses: at or before the first infusion ("limits")
        pre = inputs.before_first_infusion
        if term.before_first_infusion != "limits" or pre is None:
            self.pre: np.ndarray | None = None
        else:
            pre = np.asarray(pre, dtype=bool)
            self.pre = pre if pre.any() else None
        # rows whose missing baseline is taken as normal (conventions.yaml, baseline.missing):
        # found with the baseline status (status()) or, for the value reading, here
        self.assumed: np.ndarray | None = None
        if term.assume_normal_baseline and term.baseline_rule == "if_value_abnormal":
            base = inputs.baseline
            missing = np.ones(self.n, dtype=bool) if base is None else np.isnan(base)
            if self.pre is not None:
                missing = missing & ~self.pre
            self.assumed = missing if missing.any() else None

    def nan(self, name: str) -> np.ndarray | None:
        """Where input ``name`` is missing, or None when it is never missing (fast path)."""
        if name not in self._nan:
            arr = getattr(self.x, name)
            if arr is None:
                self._nan[name] = np.ones(self.n, dtype=bool)
            else:
                mask = np.isnan(arr)
                self._nan[name] = mask if mask.any() else None
        return self._nan[name]

    def ratio(self, name: str) -> np.ndarray:
        """``value / limit`` (NaN where the limit is missing)."""
        if name not in self._ratio:
            limit = getattr(self.x, name)
            if limit is None:
                self._ratio[name] = np.full(self.n, np.nan)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    self._ratio[name] = np.divide(self.x.value, limit)
        return self._ratio[name]

    def status(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(abnormal and known?, unknown-mask or None) of the baseline on the term's side."""
        if self._status is None:
            x = self.x
            if x.baseline_abnormal is not None:
                abnormal = x.baseline_abnormal == 1.0
                unknown = np.isnan(x.baseline_abnormal)
            else:
                base = x.baseline if x.baseline is not None else np.full(self.n, np.nan)
                if self.compiled.term.direction == "high":
                    limit = x.baseline_uln if x.baseline_uln is not None else x.uln
                    abnormal = base > limit
                else:
                    limit = x.baseline_lln if x.baseline_lln is not None else x.lln
                    abnormal = base < limit
                unknown = np.isnan(base) | np.isnan(limit)
            if self.pre is not None:  # before treatment: graded as if the baseline were normal
                abnormal = abnormal & ~self.pre
                unknown = unknown & ~self.pre
            if self.compiled.term.assume_normal_baseline and unknown.any():
                # a missing baseline (neither value nor status known) is taken as normal
                missing = unknown if x.baseline is None else unknown & np.isnan(x.baseline)
                if missing.any():
                    self.assumed = missing
                    unknown = unknown & ~missing
            self._status = (abnormal, unknown if unknown.any() else None)
        return self._status

    def gate(self, rc: ResolvedCriterion) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(where the criterion applies, or None for everywhere; where that is unknown).

        Baseline clauses never apply to values graded against the limits only (``pre``)."""
        applies = rc.criterion.applies
        gate, unknown = self._gate_of(applies)
        if self.pre is not None and rc.criterion.kind in _BASELINE_KINDS:
            gate = ~self.pre if gate is None else gate & ~self.pre
            unknown = None if unknown is None else unknown & ~self.pre
        return gate, unknown

    def _gate_of(self, applies: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if applies == "always":
            return None, None
        if applies not in self._gate:
            if applies in ("anticoagulated", "not_anticoagulated"):
                on = self.x.anticoagulated
                on = np.zeros(self.n, dtype=bool) if on is None else on.astype(bool, copy=False)
                if self.pre is not None:  # before treatment: graded as if not on it
                    on = on & ~self.pre
                self._gate[applies] = ((on if applies == "anticoagulated" else ~on), None)
            elif applies == "value_abnormal":  # the value beyond the term's limit
                name = "uln" if self.compiled.term.direction == "high" else "lln"
                op = ">" if name == "uln" else "<"
                beyond = _COMPARE[op](self.ratio(name), _nudged(op, 1.0))
                missing = self.nan(name)
                self._gate[applies] = (
                    (beyond, None) if missing is None else (beyond & ~missing, missing)
                )
            else:
                abnormal, unknown = self.status()
                mask = abnormal if applies == "baseline_abnormal" else ~abnormal
                if unknown is not None:
                    mask = mask & ~unknown
                self._gate[applies] = (mask, unknown)
        return self._gate[applies]

    def test(self, rc: ResolvedCriterion) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(true-mask ignoring applicability, missing-input mask or None, its reason code)."""
        c = rc.criterion
        compare = _COMPARE[c.op]
        if c.kind == "absolute":
            return compare(self.x.value, _nudged(c.op, rc.number)), None, 0
        if c.kind == "plus_uln":
            ref = (self.x.uln + rc.number) * _nudged(c.op, 1.0)
            return compare(self.x.value, ref), self.nan("uln"), R_ULN
        name = _LIMIT[c.kind]
        hit = compare(self.ratio(name), _nudged(c.op, _factor(rc)))
        return hit, self.nan(name), _LIMIT_REASON[name]

    def could_if_abnormal(self, rc: ResolvedCriterion) -> np.ndarray:
        """Where a baseline criterion could hold for *some* abnormal baseline.

        An abnormal baseline lies beyond the limit (above ULN for a high term, below LLN for a
        low one), so ``value > m × baseline`` needs ``value > m × ULN``: a normal value is never
        graded up by an unknown abnormal baseline.
        """
        name = "uln" if self.compiled.term.direction == "high" else "lln"
        hit = _COMPARE[rc.criterion.op](self.ratio(name), _nudged(rc.criterion.op, _factor(rc)))
        missing = self.nan(name)
        return hit if missing is None else hit | missing


def evaluate(compiled: CompiledTerm, inputs: LabInputs, *, detail: bool = False) -> Evaluation:
    """Grade every row of ``inputs`` by ``compiled`` (all arrays of one length, one unit)."""
    ctx = _Context(compiled, inputs)
    n = ctx.n
    grade = np.zeros(n, dtype=np.int8)
    reason = np.zeros(n, dtype=np.uint8)
    # grades are visited from the highest down, so "a higher grade is already true" is grade > 0
    blocked: np.ndarray | None = None  # a higher grade was unknown before any was true
    matched = np.full(n, -1, dtype=np.int16) if detail else None
    by_grade: dict[int, list[ResolvedCriterion]] = {}
    for rc in compiled.criteria:
        by_grade.setdefault(rc.grade, []).append(rc)
    for g in sorted(by_grade, reverse=True):
        true_g: np.ndarray | None = None
        unknown_g: np.ndarray | None = None
        for rc in by_grade[g]:
            result = _criterion(ctx, rc, reason, grade)
            if result is None:
                continue
            true_c, unknown_c = result
            if matched is not None:
                np.copyto(matched, rc.index, where=true_c & (grade == 0) & (matched < 0))
            true_g = true_c if true_g is None else true_g | true_c
            if unknown_c is not None:
                unknown_g = unknown_c if unknown_g is None else unknown_g | unknown_c
        if true_g is None:
            true_g = np.zeros(n, dtype=bool)
        if unknown_g is not None:
            newly = unknown_g & ~true_g & (grade == 0)
            blocked = newly if blocked is None else blocked | newly
        np.maximum(grade, true_g.view(np.int8) * np.int8(g), out=grade)
    # (masked writes with where=/boolean indexing are ~50x slower than this bool arithmetic)
    missing_value = np.isnan(inputs.value)
    not_gradable = missing_value if blocked is None else blocked | missing_value
    gradable = ~not_gradable
    if blocked is None:
        reason = missing_value.view(np.uint8) * np.uint8(R_VALUE)
    else:
        reason *= not_gradable.view(np.uint8)  # keep the reasons of not-gradable rows only
        reason *= (~missing_value).view(np.uint8)  # a missing value is the reason that wins
        reason += missing_value.view(np.uint8) * np.uint8(R_VALUE)
    grade *= gradable.view(np.int8)
    if matched is not None:
        np.copyto(matched, -1, where=not_gradable)
    if compiled.term.uses_baseline_status:
        ctx.status()  # finds the assumed rows, if no criterion asked for the status
    assumed = None if ctx.assumed is None else ctx.assumed & gradable
    return Evaluation(
        grade=grade, gradable=gradable, reason=reason, matched=matched, assumed=assumed
    )


def _criterion(
    ctx: _Context, rc: ResolvedCriterion, reason: np.ndarray, grade: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(true-mask, unknown-mask or None) of one criterion, None if it applies nowhere.

    Notes the reason of rows left unknown.
    """
    gate, gate_unknown = ctx.gate(rc)
    if gate is not None and gate_unknown is None and not gate.any():
        return None
    hit, missing, why = ctx.test(rc)
    if rc.criterion.if_missing == "ignore":
        missing = None
    elif missing is not None and ctx.assumed is not None and why == R_BASELINE:
        missing = missing & ~ctx.assumed  # no baseline, taken as normal: the clause is not met
        missing = missing if missing.any() else None
    true_c = hit if gate is None else hit & gate
    if missing is None and gate_unknown is None:
        return true_c, None
    could = None
    if missing is not None and rc.criterion.applies == "baseline_abnormal":
        could = ctx.could_if_abnormal(rc)
    undecided = grade == 0
    unknown_c = None
    if missing is not None:
        unknown_c = missing if gate is None else missing & gate
        if could is not None:
            unknown_c = unknown_c & could
        _note(reason, unknown_c & undecided, why)
    if gate_unknown is not None:
        unsure = None if missing is None else (missing if could is None else missing & could)
        possible = hit if unsure is None else hit | unsure
        status_unknown = gate_unknown & possible
        _note(reason, status_unknown & undecided, R_STATUS)
        unknown_c = status_unknown if unknown_c is None else unknown_c | status_unknown
    return true_c, unknown_c


def _note(reason: np.ndarray, where: np.ndarray, code: int) -> None:
    """Record ``code`` as the reason of rows in ``where`` that have none yet."""
    reason += (where & (reason == 0)).view(np.uint8) * np.uint8(code)
