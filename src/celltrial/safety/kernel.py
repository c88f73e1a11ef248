"""The frame grader's kernel: criteria compiled into small tables, groups graded with scalars.

:func:`celltrial.safety.grading.derive_lab_grades` grades every row of a frame on the low and the
high side of its test. Its rows are grouped by *pkey* and each group is graded here:

* ``pkey = before × keys × 9 + key × 9 + regime_low × 3 + regime_high``: the key is the row's
  (test, unit) and the regime of a side the condition its term's criteria depend on — baseline
  normal (0), abnormal (1) or unknown (2) for terms graded on the baseline when it was abnormal
  (a missing baseline taken as normal by conventions.yaml is 0), off (0) or on (1)
  anticoagulation for INR; ``before`` is 1 for values taken at or before the first infusion
  (graded without the baseline clauses where the term's convention says ``limits``), the most
  significant part so that frames without such values keep the small pkey range (the counting
  sort's counts stay in the L1 cache). Every row of a group has the same thresholds;
* :func:`plan_side` compiles the terms of the keys present (:meth:`CriteriaTable.compile`:
  thresholds converted into the unit of the values, never the values) into tables indexed by
  pkey, one *family* per compared quantity (the value, ``value / ULN``, ``value / LLN``, the
  value against ``ULN + offset``, ``value / baseline``) with one *slot* per grade: the grade's
  threshold, else the threshold of the next higher grade the term has in that family, else NaN.
  Thresholds rise with the grade (fall on the low side), so the number of slots a value passes
  is the highest grade of the family it meets, and a row's grade is the highest over families.
  A criterion that does not apply in a regime has no threshold there;
* :func:`grade_group` grades a group: per slot the term has, one comparison of the group's
  values (or ratios) with a scalar, one addition; a missing value or LLN/ULN is resolved the way
  evaluate() resolves it. Groups that need more of the three-valued "not gradable" logic
  (baseline status unknown, a baseline or one of two needed limits missing, unusual criteria)
  return None and are graded by :func:`~celltrial.safety.evaluate.evaluate` itself.

The comparisons are those of evaluate(), the engine of :func:`grade_lab` (the same nudged
thresholds, the same ``value / limit`` ratios; ``>=``/``<=`` become ``>``/``<`` against the
neighbouring float, which is exact), so every row gets the grade and reason that engine gives it
(``tests/safety/test_frame_matches_scalar.py`` checks that, at exact thresholds too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from celltrial.errors import UnitError
from celltrial.safety.criteria import CompiledTerm, CriteriaTable, TermCriteria
from celltrial.safety.evaluate import (
    R_LLN,
    R_QUALIFIER,
    R_ULN,
    R_UNIT,
    R_VALUE,
    _factor,
    _nudged,
)

SIDE_REGIMES = 3  # per side: 0 normal/off, 1 abnormal/on, 2 unknown
REGIMES = SIDE_REGIMES * SIDE_REGIMES  # regime_low × 3 + regime_high
UNKNOWN = 2  # regime: baseline status unknown
MISSING = 3  # a baseline status (never a regime): missing, neither value nor status known
# info table bits (uint16): term code + 1 in the low 10 bits, then flags
TERM_BITS = 0x3FF
F_UNIT = 1 << 10  # unit not convertible for this term
F_SLOW = 1 << 11  # evaluate() grades these rows (status unknown, unusual criteria)
F_BASE = 1 << 12  # a missing baseline leaves grades open: evaluate() when it is missing
F_DUAL = 1 << 13  # needs both LLN and ULN: evaluate() when one is missing

_COMPARAND = {
    "absolute": "value",
    "x_uln": "uln",
    "x_lln": "lln",
    "plus_uln": "uln_plus",
    "x_baseline": "baseline",
    "pct_change": "baseline",
}
_STRICT = {">": ">", ">=": ">", "<": "<", "<=": "<"}
_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
_APPLIES = {  # regime (0, 1) → does a criterion with this condition apply?
    "always": (True, True),
    "baseline_normal": (True, False),
    "baseline_abnormal": (False, True),
    "not_anticoagulated": (True, False),
    "anticoagulated": (False, True),
}
_BASELINE_KINDS = frozenset({"x_baseline", "pct_change"})


def _strict_threshold(op: str, number: float) -> float:
    """The ``t`` with ``x op number`` ⇔ ``x > t`` (``>``, ``>=``) or ``x < t``, for every float."""
    if op == ">=":
        return float(np.nextafter(number, -np.inf))
    if op == "<=":
        return float(np.nextafter(number, np.inf))
    return number


def condition(term: TermCriteria) -> str | None:
    """What ``term``'s criteria depend on: ``status``, ``anticoagulated``, ``value`` (the value
    beyond its limit: evaluate() grades those), ``mixed`` or None."""
    found = set()
    for rule in term.grades:
        for c in rule.criteria:
            if c.applies in ("baseline_normal", "baseline_abnormal"):
                found.add("status")
            elif c.applies in ("anticoagulated", "not_anticoagulated"):
                found.add("anticoagulated")
            elif c.applies == "value_abnormal":
                found.add("value")
    if len(found) > 1:
        return "mixed"
    return next(iter(found), None)


def pkeys(
    key: int, regime: int, direction: str, before: bool = False, n_keys: int = 0
) -> list[int]:
    """The pkeys of ``key`` whose regime on ``direction``'s side is ``regime`` (values at or
    before the first infusion when ``before``; ``n_keys``: how many keys there are)."""
    first = key * REGIMES + (n_keys * REGIMES if before else 0)
    if direction == "low":
        return [first + regime * SIDE_REGIMES + other for other in range(SIDE_REGIMES)]
    return [first + other * SIDE_REGIMES + regime for other in range(SIDE_REGIMES)]


def key_of(p: int, n_keys: int) -> int:
    """The (test, unit) key of pkey ``p``."""
    return (p % (n_keys * REGIMES)) // REGIMES


def is_before(p: int, n_keys: int) -> bool:
    """Whether pkey ``p`` holds values taken at or before the first infusion."""
    return p >= n_keys * REGIMES


@dataclass
class Family:
    """The criteria of one side that compare one quantity, as slot tables indexed by pkey."""

    comparand: str  # value | uln | lln | uln_plus | baseline
    op: str  # ">"/"<" (thresholds made strict); uln_plus keeps its operator
    nudge: float  # uln_plus only: the reference is (ULN + offset) × nudge
    slots: list[np.ndarray]  # per slot (grade 1, 2, …): float64[P], NaN = never
    weights: list[int]  # grades a slot stands for (>1 where equal slots were merged)
    # per pkey, the highest grade here that a missing LLN/ULN leaves unknown (0: none, or the
    # rows go to evaluate())
    unknown_top: np.ndarray

    @property
    def limit(self) -> str | None:
        """The limit (``uln``/``lln``) the family compares with, if any."""
        return {"uln": "uln", "uln_plus": "uln", "lln": "lln"}.get(self.comparand)


@dataclass
class SidePlan:
    """Everything the kernel needs for one side (low or high) of every pkey."""

    direction: str
    families: list[Family]
    info: np.ndarray  # uint16[P]: term code + 1 and F_* flags
    top: np.ndarray  # int8[P]: highest lab grade of the term (qualifiers)
    compiled: dict[int, CompiledTerm]  # key → compiled term (graded keys only)


def plan_side(
    table: CriteriaTable,
    direction: str,
    terms: dict[int, TermCriteria],
    units: dict[int, str],
    n_keys: int,
    term_position: dict[str, int],
    present: frozenset[int] | None = None,
) -> SidePlan:
    """Compile the terms of the present keys (``terms``: key → term) on one side; only the
    pkeys in ``present`` (default: all) get their thresholds."""
    size = 2 * n_keys * REGIMES  # values after and (before × …) at or before the first infusion

    def wanted(at: list[int]) -> list[int]:
        return at if present is None else [p for p in at if p in present]

    info = np.zeros(size, dtype=np.uint16)
    top = np.zeros(size, dtype=np.int8)
    compiled_by_key: dict[int, CompiledTerm] = {}
    want = ">" if direction == "high" else "<"
    # (comparand, op) → pkey → grade → strict threshold (offset for uln_plus)
    collected: dict[tuple[str, str], dict[int, dict[int, float]]] = {}
    unknown: dict[tuple[str, str], dict[int, int]] = {}  # → pkey → highest open grade
    for k, term in terms.items():
        code = term_position[term.ctcae_term] + 1
        try:
            compiled = table.compile(term, units[k])
        except UnitError:
            for before in (False, True):
                for r in range(SIDE_REGIMES):
                    info[wanted(pkeys(k, r, direction, before, n_keys))] = code | F_UNIT
            continue
        compiled_by_key[k] = compiled
        kind = condition(term)
        grade_top = max(rc.grade for rc in compiled.criteria)
        for before, r in ((b, r) for b in (False, True) for r in range(SIDE_REGIMES)):
            at = wanted(pkeys(k, r, direction, before, n_keys))
            if not at:
                continue
            flags = code
            top[at] = grade_top
            # before the first infusion, "limits": no baseline clause, baseline taken as normal
            limits_only = before and term.before_first_infusion == "limits"
            if not limits_only and (
                kind in ("mixed", "value") or (kind == "status" and r == UNKNOWN)
            ):
                info[at] = flags | F_SLOW
                continue
            applies = 1 if r == 1 and not limits_only else 0  # anticoagulation: no unknown
            limits: set[str] = set()
            open_grades: dict[tuple[str, str], int] = {}
            entries: dict[tuple[str, str], dict[int, float]] = {}
            for rc in compiled.criteria:
                c = rc.criterion
                if limits_only and c.kind in _BASELINE_KINDS:
                    continue
                if c.applies not in _APPLIES:
                    flags |= F_SLOW
                    continue
                if not _APPLIES[c.applies][applies]:
                    continue
                if _STRICT[c.op] != want:
                    flags |= F_SLOW  # e.g. a decrease criterion on a high term
                    continue
                comparand = _COMPARAND[c.kind]
                if comparand == "uln_plus":
                    op, value = c.op, rc.number
                elif comparand == "value":
                    op, value = want, _strict_threshold(c.op, _nudged(c.op, rc.number))
                else:
                    op, value = want, _strict_threshold(c.op, _nudged(c.op, _factor(rc)))
                family = (comparand, op)
                grades = entries.setdefault(family, {})
                if rc.grade in grades:  # two criteria of one grade on one quantity: either
                    value = (min if want == ">" else max)(grades[rc.grade], value)
                grades[rc.grade] = value
                if c.if_missing == "not_gradable":
                    if comparand == "baseline":
                        flags |= F_BASE
                    elif comparand != "value":
                        limits.add("lln" if comparand == "lln" else "uln")
                        open_grades[family] = max(open_grades.get(family, 0), rc.grade)
            if len(limits) > 1:
                flags |= F_DUAL
                open_grades = {}
            info[at] = flags
            for family, grades in entries.items():
                for p in at:
                    collected.setdefault(family, {})[p] = grades
                    if family in open_grades:
                        unknown.setdefault(family, {})[p] = open_grades[family]
    families = []
    for (comparand, op), by_pkey in collected.items():
        n_slots = max(max(g) for g in by_pkey.values())
        slots = [np.full(size, np.nan) for _ in range(n_slots)]
        unknown_top = np.zeros(size, dtype=np.int8)
        for p, grade in unknown.get((comparand, op), {}).items():
            unknown_top[p] = grade
        for p, grades in by_pkey.items():
            filled: list[float] = []
            above = np.nan
            for g in range(n_slots, 0, -1):
                above = grades.get(g, above)
                filled.append(above)
            filled.reverse()
            known = [t for t in filled if not np.isnan(t)]
            if known != sorted(known, reverse=(want == "<")):
                info[p] |= F_SLOW  # a higher grade easier to reach: evaluate() decides
                continue
            for j, t in enumerate(filled):
                slots[j][p] = t
        # a slot equal to the next one for every pkey counts twice: one pass instead of two
        merged: list[np.ndarray] = []
        weights: list[int] = []
        carry = 0
        for j, slot in enumerate(slots):
            if j + 1 < len(slots) and np.array_equal(slot, slots[j + 1], equal_nan=True):
                carry += 1
                continue
            merged.append(slot)
            weights.append(1 + carry)
            carry = 0
        nudge = _nudged(op, 1.0) if comparand == "uln_plus" else 1.0
        families.append(Family(comparand, op, nudge, merged, weights, unknown_top))
    return SidePlan(direction, families, info, top, compiled_by_key)


# --- one (test, unit, regime) group of rows at a time ---------------------------------------

NOT_GRADABLE, NO_TERM = 5, 6  # grade codes beside 0-4


def uses_baseline(plan: SidePlan, p: int) -> bool:
    """Whether the rows of pkey ``p`` need their baseline value on this side."""
    if int(plan.info[p]) & F_BASE:
        return True
    return any(f.comparand == "baseline" and not np.isnan(f.slots[0][p]) for f in plan.families)


def grade_group(
    plan: SidePlan,
    p: int,
    value: np.ndarray,
    lln: np.ndarray,
    uln: np.ndarray,
    baseline: np.ndarray | None,
    missing: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Grade codes (0-4, NOT_GRADABLE, NO_TERM) and reasons of a group's rows on one side.

    ``p`` is the group's pkey; every row has the same test, unit and regime, so each threshold
    is a scalar. ``missing``: the rows without ``value``, ``lln``, ``uln``. None when
    :func:`evaluate` must grade the group (baseline status unknown, a baseline or one of two
    needed limits missing, unusual criteria).
    """
    info = int(plan.info[p])
    m = len(value)
    if not info & TERM_BITS:
        return np.full(m, NO_TERM, dtype=np.uint8), np.zeros(m, dtype=np.uint8)
    if info & F_UNIT:
        return np.full(m, NOT_GRADABLE, dtype=np.uint8), np.full(m, R_UNIT, dtype=np.uint8)
    if info & F_SLOW:
        return None
    if info & F_BASE and (baseline is None or bool(np.isnan(baseline).any())):
        return None
    if info & F_DUAL and (len(missing["lln"]) or len(missing["uln"])):
        return None
    grade = np.zeros(m, dtype=np.uint8)
    count = np.empty(m, dtype=np.uint8)
    unknown: dict[str, int] = {}
    for family in plan.families:
        slots = [
            (float(slot[p]), w)
            for slot, w in zip(family.slots, family.weights, strict=True)
            if not np.isnan(slot[p])
        ]
        if not slots:
            continue
        if family.unknown_top[p]:
            limit = family.limit or ""
            unknown[limit] = max(unknown.get(limit, 0), int(family.unknown_top[p]))
        compare = _COMPARE[family.op]
        if family.comparand in ("value", "uln_plus"):
            comparand = value
        else:
            limit_values = {"uln": uln, "lln": lln, "baseline": baseline}[family.comparand]
            if limit_values is None:
                continue  # no baseline: its criteria never hold (none is needed, F_BASE)
            with np.errstate(divide="ignore", invalid="ignore"):
                comparand = np.divide(value, limit_values)
        count.fill(0)
        for threshold, weight in slots:
            if family.comparand == "uln_plus":
                hit = compare(value, (uln + threshold) * family.nudge)
            else:
                hit = compare(comparand, threshold)
            passed = hit.view(np.uint8)
            count += passed if weight == 1 else passed * np.uint8(weight)
        np.maximum(grade, count, out=grade)
    reason = np.zeros(m, dtype=np.uint8)
    for limit, top in unknown.items():  # a missing limit leaves grades up to ``top`` open
        at = missing[limit]
        at = at[grade.take(at) < top]
        grade[at] = NOT_GRADABLE
        reason[at] = R_ULN if limit == "uln" else R_LLN
    at = missing["value"]
    grade[at] = NOT_GRADABLE
    reason[at] = R_VALUE
    return grade, reason


def apply_qualifier(
    plan: SidePlan,
    p: int,
    codes: np.ndarray,
    reasons: np.ndarray,
    below: np.ndarray,
    above: np.ndarray,
) -> None:
    """Values at a reporting limit keep their grade only when it is certain.

    The rule of :func:`celltrial.safety.grading._apply_qualifier`, on grade codes.
    """
    worse, better = (below, above) if plan.direction == "low" else (above, below)
    top = int(plan.top[p])
    graded = codes < NOT_GRADABLE
    uncertain = graded & ((worse & (codes < top)) | (better & (codes > 0)))
    if uncertain.any():
        codes[uncertain] = NOT_GRADABLE
        reasons[uncertain] = R_QUALIFIER
