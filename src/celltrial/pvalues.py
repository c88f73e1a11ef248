"""P-values as a reader sees them, the same in the report, the CLI and the web app.

Conventions (as journals such as NEJM and JAMA ask): p ≥ 0.01 to two significant digits
(p = 0.38, p = 0.046; halves round up: 0.0625 → 0.063), 0.001 ≤ p < 0.01 to one
(p = 0.004), smaller as "p < 0.001"; never
"p = 0". An exact p of 1 prints as "p = 1". Missing or not finite: "p not computed".
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

#: Below this a p-value is printed as an inequality.
SMALLEST_SHOWN = 0.001


def p_number(p: float | None) -> str:
    """The number part alone: "0.38", "0.004", "<0.001", "1"; "—" when missing (for table
    cells whose header already says p)."""
    if p is None or not isinstance(p, int | float) or not math.isfinite(p) or p < 0:
        return "—"
    if p < SMALLEST_SHOWN:
        return f"<{SMALLEST_SHOWN:g}"
    if p >= 1:
        return "1"
    digits = 2 if p >= 0.01 else 1
    # halves round up, as people round (0.0625 → 0.063), not to even as floats format
    exponent = Decimal(p).adjusted() - digits + 1
    rounded = Decimal(p).quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    return format(rounded.normalize(), "f")


def format_p(p: float | None) -> str:
    """A p-value as written: p = 0.38, p = 0.004, p < 0.001, p = 1; "p not computed" if missing."""
    number = p_number(p)
    if number == "—":
        return "p not computed"
    if number.startswith("<"):
        return f"p < {number[1:]}"
    return f"p = {number}"
