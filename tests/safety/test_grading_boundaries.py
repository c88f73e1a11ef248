"""Every grade boundary of every CTCAE v5.0 lab term: just beyond, at and just inside.

The expected grades are read off the CTCAE v5.0 text (quoted above each block), never computed
by celltrial. ``edge(x, beyond, at, inside, d)`` stands for three cases: ``x ∓ d`` on the abnormal
side gets ``beyond``, ``x`` itself gets ``at``, ``x`` moved by ``d`` towards normal gets ``inside``.
"""

from __future__ import annotations

from typing import Any

import pytest

from celltrial.safety import grade_lab

Case = tuple[str, float, str, dict[str, Any], int | None]
CASES: list[Case] = []


def edge(
    term: str,
    unit: str,
    x: float,
    beyond: int | None,
    at: int | None,
    inside: int | None,
    d: float,
    *,
    low: bool,
    **kw: Any,
) -> None:
    """Three cases around threshold ``x`` of a low (``low=True``) or high term."""
    step = -d if low else d
    CASES.append((term, x + step, unit, kw, beyond))
    CASES.append((term, x, unit, kw, at))
    CASES.append((term, x - step, unit, kw, inside))


def case(term: str, value: float, unit: str, expected: int | None, **kw: Any) -> None:
    CASES.append((term, value, unit, kw, expected))


# --- Anemia: G1 Hgb <LLN - 10.0 g/dL; <LLN - 6.2 mmol/L; <LLN - 100 g/L
#             G2 <10.0 - 8.0 g/dL; <6.2 - 4.9 mmol/L; <100 - 80 g/L; G3 <8.0 g/dL; <4.9; <80 g/L
T = "Anemia"
edge(T, "g/L", 120.0, 1, 0, 0, 0.1, low=True, lln=120.0)
edge(T, "g/L", 100.0, 2, 1, 1, 0.1, low=True, lln=120.0)
edge(T, "g/L", 80.0, 3, 2, 2, 0.1, low=True, lln=120.0)
edge(T, "g/dL", 12.0, 1, 0, 0, 0.01, low=True, lln=12.0)
edge(T, "g/dL", 10.0, 2, 1, 1, 0.01, low=True, lln=12.0)
edge(T, "g/dL", 8.0, 3, 2, 2, 0.01, low=True, lln=12.0)
edge(T, "mmol/L", 6.2, 2, 1, 1, 0.01, low=True, lln=7.4)
edge(T, "mmol/L", 4.9, 3, 2, 2, 0.01, low=True, lln=7.4)
case(T, 105.0, "g/L", None)  # LLN missing: grade 0 or 1 cannot be told
case(T, 99.0, "g/L", 2)  # … but <100 g/L is grade 2 whatever the LLN
case(T, 79.0, "g/L", 3)

# --- Hemoglobin increased: G1 increase >0 - 2 g/dL, G2 >2 - 4 g/dL, G3 >4 g/dL (above ULN)
T = "Hemoglobin increased"
edge(T, "g/L", 175.0, 1, 0, 0, 0.1, low=False, uln=175.0)
edge(T, "g/L", 195.0, 2, 1, 1, 0.1, low=False, uln=175.0)
edge(T, "g/L", 215.0, 3, 2, 2, 0.1, low=False, uln=175.0)
edge(T, "g/dL", 17.5, 1, 0, 0, 0.01, low=False, uln=17.5)
edge(T, "g/dL", 19.5, 2, 1, 1, 0.01, low=False, uln=17.5)
edge(T, "g/dL", 21.5, 3, 2, 2, 0.01, low=False, uln=17.5)
case(T, 200.0, "g/L", None)  # ULN missing

# --- Lymphocyte count decreased: G1 <LLN - 800/mm3 (<LLN - 0.8 x 10e9/L), G2 <800 - 500,
#     G3 <500 - 200, G4 <200/mm3
T = "Lymphocyte count decreased"
edge(T, "10^9/L", 1.1, 1, 0, 0, 0.01, low=True, lln=1.1)
edge(T, "10^9/L", 0.8, 2, 1, 1, 0.01, low=True, lln=1.1)
edge(T, "10^9/L", 0.5, 3, 2, 2, 0.01, low=True, lln=1.1)
edge(T, "10^9/L", 0.2, 4, 3, 3, 0.01, low=True, lln=1.1)
edge(T, "cells/uL", 800.0, 2, 1, 1, 1.0, low=True, lln=1100.0)
edge(T, "/mm3", 500.0, 3, 2, 2, 1.0, low=True, lln=1100.0)
edge(T, "10^3/uL", 0.2, 4, 3, 3, 0.01, low=True, lln=1.1)
case(T, 0.9, "10^9/L", None)  # LLN missing
case(T, 0.7, "10^9/L", 2)

# --- Lymphocyte count increased: G2 >4000/mm3 - 20,000/mm3, G3 >20,000/mm3 (no G1)
T = "Lymphocyte count increased"
edge(T, "10^9/L", 4.0, 2, 0, 0, 0.01, low=False)
edge(T, "10^9/L", 20.0, 3, 2, 2, 0.01, low=False)
edge(T, "cells/uL", 4000.0, 2, 0, 0, 1.0, low=False)
edge(T, "cells/uL", 20000.0, 3, 2, 2, 1.0, low=False)
case(T, 3.5, "10^9/L", 0, uln=3.2)  # above ULN but CTCAE has no grade 1

# --- Neutrophil count decreased: G1 <LLN - 1500/mm3, G2 <1500 - 1000, G3 <1000 - 500, G4 <500
T = "Neutrophil count decreased"
edge(T, "10^9/L", 1.8, 1, 0, 0, 0.01, low=True, lln=1.8)
edge(T, "10^9/L", 1.5, 2, 1, 1, 0.01, low=True, lln=1.8)
edge(T, "10^9/L", 1.0, 3, 2, 2, 0.01, low=True, lln=1.8)
edge(T, "10^9/L", 0.5, 4, 3, 3, 0.01, low=True, lln=1.8)
edge(T, "cells/uL", 1500.0, 2, 1, 1, 1.0, low=True, lln=1800.0)
edge(T, "cells/uL", 500.0, 4, 3, 3, 1.0, low=True, lln=1800.0)

# --- White blood cell decreased: G1 <LLN - 3000/mm3, G2 <3000 - 2000, G3 <2000 - 1000, G4 <1000
T = "White blood cell decreased"
edge(T, "10^9/L", 3.5, 1, 0, 0, 0.01, low=True, lln=3.5)
edge(T, "10^9/L", 3.0, 2, 1, 1, 0.01, low=True, lln=3.5)
edge(T, "10^9/L", 2.0, 3, 2, 2, 0.01, low=True, lln=3.5)
edge(T, "10^9/L", 1.0, 4, 3, 3, 0.01, low=True, lln=3.5)
edge(T, "/uL", 3000.0, 2, 1, 1, 1.0, low=True, lln=3500.0)

# --- Leukocytosis: G3 >100,000/mm3 (G4 clinical)
T = "Leukocytosis"
edge(T, "10^9/L", 100.0, 3, 0, 0, 0.1, low=False)
edge(T, "cells/uL", 100000.0, 3, 0, 0, 1.0, low=False)

# --- Platelet count decreased: G1 <LLN - 75,000/mm3, G2 <75,000 - 50,000, G3 <50,000 - 25,000,
#     G4 <25,000/mm3
T = "Platelet count decreased"
edge(T, "10^9/L", 125.0, 1, 0, 0, 0.1, low=True, lln=125.0)
edge(T, "10^9/L", 75.0, 2, 1, 1, 0.1, low=True, lln=125.0)
edge(T, "10^9/L", 50.0, 3, 2, 2, 0.1, low=True, lln=125.0)
edge(T, "10^9/L", 25.0, 4, 3, 3, 0.1, low=True, lln=125.0)
edge(T, "/mm3", 75000.0, 2, 1, 1, 1.0, low=True, lln=125000.0)
edge(T, "10^3/uL", 25.0, 4, 3, 3, 0.1, low=True, lln=125.0)

# --- CD4 lymphocytes decreased: G1 <LLN - 500/mm3, G2 <500 - 200, G3 <200 - 50, G4 <50/mm3
T = "CD4 lymphocytes decreased"
edge(T, "cells/uL", 600.0, 1, 0, 0, 1.0, low=True, lln=600.0)
edge(T, "cells/uL", 500.0, 2, 1, 1, 1.0, low=True, lln=600.0)
edge(T, "cells/uL", 200.0, 3, 2, 2, 1.0, low=True, lln=600.0)
edge(T, "cells/uL", 50.0, 4, 3, 3, 1.0, low=True, lln=600.0)
edge(T, "10^9/L", 0.5, 2, 1, 1, 0.001, low=True, lln=0.6)
edge(T, "10^9/L", 0.05, 4, 3, 3, 0.001, low=True, lln=0.6)

# --- ALT / AST increased: G1 >ULN - 3.0 x ULN if baseline was normal; 1.5 - 3.0 x baseline if
#     baseline was abnormal; G2 >3.0 - 5.0 x; G3 >5.0 - 20.0 x; G4 >20.0 x (ULN or baseline)
for T in ("Alanine aminotransferase increased", "Aspartate aminotransferase increased"):
    normal = {"uln": 40.0, "baseline_abnormal": False}
    edge(T, "U/L", 40.0, 1, 0, 0, 0.1, low=False, **normal)
    edge(T, "U/L", 120.0, 2, 1, 1, 0.1, low=False, **normal)
    edge(T, "U/L", 200.0, 3, 2, 2, 0.1, low=False, **normal)
    edge(T, "U/L", 800.0, 4, 3, 3, 0.1, low=False, **normal)
    edge(T, "IU/L", 120.0, 2, 1, 1, 0.1, low=False, uln=40.0, baseline=30.0)  # derived normal
    abnormal = {"uln": 40.0, "baseline": 100.0}  # baseline above ULN: abnormal
    edge(T, "U/L", 150.0, 1, 1, 0, 0.1, low=False, **abnormal)  # "1.5 -": 1.5 x itself is G1
    edge(T, "U/L", 300.0, 2, 1, 1, 0.1, low=False, **abnormal)
    edge(T, "U/L", 500.0, 3, 2, 2, 0.1, low=False, **abnormal)
    edge(T, "U/L", 2000.0, 4, 3, 3, 0.1, low=False, **abnormal)
    case(T, 100.0, "U/L", None, baseline_abnormal=False)  # ULN missing
    # no baseline: graded as if it had been normal (conventions.yaml, baseline.missing)
    case(T, 100.0, "U/L", 1, uln=40.0)  # 2.5 x ULN
    case(T, 1000.0, "U/L", 4, uln=40.0)  # 25 x ULN: grade 4, not "not gradable"
    case(T, 30.0, "U/L", 0, uln=40.0)
    case(T, 200.0, "U/L", None, uln=40.0, baseline_abnormal=True)  # abnormal, value missing
    # at or before the first infusion (the baseline itself): against ULN, even when abnormal
    before = {"uln": 40.0, "baseline": 116.0, "before_first_infusion": True}  # 2.9 x ULN
    case(T, 116.0, "U/L", 1, **before)  # after treatment it would be 1.0 x baseline: grade 0
    edge(T, "U/L", 40.0, 1, 0, 0, 0.1, low=False, **before)
    edge(T, "U/L", 120.0, 2, 1, 1, 0.1, low=False, **before)
    edge(T, "U/L", 200.0, 3, 2, 2, 0.1, low=False, **before)
    edge(T, "U/L", 800.0, 4, 3, 3, 0.1, low=False, **before)
    case(T, 116.0, "U/L", 0, uln=40.0, baseline=116.0)  # after it: 1.0 x an abnormal baseline

# --- Alkaline phosphatase / GGT increased: G1 >ULN - 2.5 x ULN if normal; 2.0 - 2.5 x baseline if
#     abnormal; G2 >2.5 - 5.0 x; G3 >5.0 - 20.0 x; G4 >20.0 x
T = "Alkaline phosphatase increased"
edge(T, "U/L", 130.0, 1, 0, 0, 0.1, low=False, uln=130.0, baseline=100.0)
edge(T, "U/L", 325.0, 2, 1, 1, 0.1, low=False, uln=130.0, baseline=100.0)
edge(T, "U/L", 650.0, 3, 2, 2, 0.1, low=False, uln=130.0, baseline=100.0)
edge(T, "U/L", 2600.0, 4, 3, 3, 0.1, low=False, uln=130.0, baseline=100.0)
edge(T, "U/L", 400.0, 1, 1, 0, 0.1, low=False, uln=130.0, baseline=200.0)
edge(T, "U/L", 500.0, 2, 1, 1, 0.1, low=False, uln=130.0, baseline=200.0)
edge(T, "U/L", 1000.0, 3, 2, 2, 0.1, low=False, uln=130.0, baseline=200.0)
edge(T, "U/L", 4000.0, 4, 3, 3, 0.1, low=False, uln=130.0, baseline=200.0)
T = "GGT increased"
edge(T, "U/L", 60.0, 1, 0, 0, 0.1, low=False, uln=60.0, baseline_abnormal=False)
edge(T, "U/L", 150.0, 2, 1, 1, 0.1, low=False, uln=60.0, baseline_abnormal=False)
edge(T, "U/L", 300.0, 3, 2, 2, 0.1, low=False, uln=60.0, baseline_abnormal=False)
edge(T, "U/L", 1200.0, 4, 3, 3, 0.1, low=False, uln=60.0, baseline_abnormal=False)
edge(T, "U/L", 200.0, 1, 1, 0, 0.1, low=False, uln=60.0, baseline=100.0)
edge(T, "U/L", 250.0, 2, 1, 1, 0.1, low=False, uln=60.0, baseline=100.0)
edge(T, "U/L", 500.0, 3, 2, 2, 0.1, low=False, uln=60.0, baseline=100.0)
edge(T, "U/L", 2000.0, 4, 3, 3, 0.1, low=False, uln=60.0, baseline=100.0)

# --- Blood bilirubin increased: G1 >ULN - 1.5 x ULN if normal; >1.0 - 1.5 x baseline if abnormal;
#     G2 >1.5 - 3.0 x; G3 >3.0 - 10.0 x; G4 >10.0 x
T = "Blood bilirubin increased"
edge(T, "umol/L", 21.0, 1, 0, 0, 0.1, low=False, uln=21.0, baseline=10.0)
edge(T, "umol/L", 31.5, 2, 1, 1, 0.1, low=False, uln=21.0, baseline=10.0)
edge(T, "µmol/L", 63.0, 3, 2, 2, 0.1, low=False, uln=21.0, baseline=10.0)
edge(T, "umol/L", 210.0, 4, 3, 3, 0.1, low=False, uln=21.0, baseline=10.0)
edge(T, "mg/dL", 1.2, 1, 0, 0, 0.01, low=False, uln=1.2, baseline=0.6)
edge(T, "mg/dL", 1.8, 2, 1, 1, 0.01, low=False, uln=1.2, baseline=0.6)
edge(T, "mg/dL", 3.6, 3, 2, 2, 0.01, low=False, uln=1.2, baseline=0.6)
edge(T, "mg/dL", 12.0, 4, 3, 3, 0.01, low=False, uln=1.2, baseline=0.6)
edge(T, "umol/L", 30.0, 1, 0, 0, 0.1, low=False, uln=21.0, baseline=30.0)
edge(T, "umol/L", 45.0, 2, 1, 1, 0.1, low=False, uln=21.0, baseline=30.0)
edge(T, "umol/L", 90.0, 3, 2, 2, 0.1, low=False, uln=21.0, baseline=30.0)
edge(T, "umol/L", 300.0, 4, 3, 3, 0.1, low=False, uln=21.0, baseline=30.0)

# --- Creatinine increased: G1 >ULN - 1.5 x ULN; G2 >1.5 - 3.0 x baseline; >1.5 - 3.0 x ULN;
#     G3 >3.0 x baseline; >3.0 - 6.0 x ULN; G4 >6.0 x ULN (the higher of both applies)
T = "Creatinine increased"
edge(T, "umol/L", 104.0, 1, 0, 0, 0.1, low=False, uln=104.0)
edge(T, "umol/L", 156.0, 2, 1, 1, 0.1, low=False, uln=104.0)
edge(T, "umol/L", 312.0, 3, 2, 2, 0.1, low=False, uln=104.0)
edge(T, "umol/L", 624.0, 4, 3, 3, 0.1, low=False, uln=104.0)
edge(T, "mg/dL", 1.2, 1, 0, 0, 0.01, low=False, uln=1.2)
edge(T, "mg/dL", 1.8, 2, 1, 1, 0.01, low=False, uln=1.2)
edge(T, "mg/dL", 3.6, 3, 2, 2, 0.01, low=False, uln=1.2)
edge(T, "mg/dL", 7.2, 4, 3, 3, 0.01, low=False, uln=1.2)
edge(T, "umol/L", 90.0, 2, 0, 0, 0.1, low=False, uln=104.0, baseline=60.0)  # 1.5 x baseline
edge(T, "umol/L", 180.0, 3, 2, 2, 0.1, low=False, uln=104.0, baseline=60.0)  # 3.0 x baseline
# before the first infusion the "x baseline" clauses do not apply: 180 is 1.73 x ULN, grade 2
case(T, 180.1, "umol/L", 2, uln=104.0, baseline=60.0, before_first_infusion=True)
case(T, 90.1, "umol/L", 0, uln=104.0, baseline=60.0, before_first_infusion=True)
case(T, 100.0, "umol/L", None, baseline=60.0)  # ULN missing: >3 x ULN cannot be excluded

# --- CPK increased: G1 >ULN - 2.5 x ULN; G2 >2.5 - 5 x; G3 >5 - 10 x; G4 >10 x ULN
T = "CPK increased"
edge(T, "U/L", 190.0, 1, 0, 0, 0.1, low=False, uln=190.0)
edge(T, "U/L", 475.0, 2, 1, 1, 0.1, low=False, uln=190.0)
edge(T, "U/L", 950.0, 3, 2, 2, 0.1, low=False, uln=190.0)
edge(T, "U/L", 1900.0, 4, 3, 3, 0.1, low=False, uln=190.0)
case(T, 200.0, "U/L", None)

# --- Lipase / serum amylase increased: G1 >ULN - 1.5 x ULN; G2 >1.5 - 2.0 x ULN; >2.0 - 5.0 x ULN
#     and asymptomatic; G3 >5.0 x ULN and asymptomatic (G3/G4 with symptoms: clinical)
for T, uln in (("Lipase increased", 60.0), ("Serum amylase increased", 100.0)):
    edge(T, "U/L", uln, 1, 0, 0, 0.1, low=False, uln=uln)
    edge(T, "U/L", 1.5 * uln, 2, 1, 1, 0.1, low=False, uln=uln)
    case(T, 2.0 * uln + 0.1, "U/L", 2, uln=uln)
    edge(T, "U/L", 5.0 * uln, 3, 2, 2, 0.1, low=False, uln=uln)

# --- Blood lactate dehydrogenase increased: G1 >ULN (no grade 2-5)
T = "Blood lactate dehydrogenase increased"
edge(T, "U/L", 250.0, 1, 0, 0, 0.1, low=False, uln=250.0)
case(T, 25000.0, "U/L", 1, uln=250.0)
case(T, 300.0, "U/L", None)

# --- Activated partial thromboplastin time prolonged: G1 >ULN - 1.5 x ULN; G2 >1.5 - 2.5 x ULN;
#     G3 >2.5 x ULN
T = "Activated partial thromboplastin time prolonged"
edge(T, "s", 37.0, 1, 0, 0, 0.1, low=False, uln=37.0)
edge(T, "sec", 55.5, 2, 1, 1, 0.1, low=False, uln=37.0)
edge(T, "s", 92.5, 3, 2, 2, 0.1, low=False, uln=37.0)

# --- INR increased: G1 >1.2 - 1.5; >1 - 1.5 x baseline if on anticoagulation; G2 >1.5 - 2.5;
#     >1.5 - 2.5 x baseline; G3 >2.5; >2.5 x baseline
T = "INR increased"
edge(T, "1", 1.2, 1, 0, 0, 0.01, low=False)
edge(T, "ratio", 1.5, 2, 1, 1, 0.01, low=False)
edge(T, "", 2.5, 3, 2, 2, 0.01, low=False)
edge(T, "1", 2.0, 1, 0, 0, 0.01, low=False, anticoagulated=True, baseline=2.0)
edge(T, "1", 3.0, 2, 1, 1, 0.01, low=False, anticoagulated=True, baseline=2.0)
edge(T, "1", 5.0, 3, 2, 2, 0.01, low=False, anticoagulated=True, baseline=2.0)
case(T, 2.2, "1", None, anticoagulated=True)  # on anticoagulation without a baseline
# on anticoagulation the baseline stays the reference before the first infusion too
case(T, 2.0, "1", 0, anticoagulated=True, baseline=2.0, before_first_infusion=True)
case(T, 2.0, "1", 2, baseline=2.0, before_first_infusion=True)  # not on it: >1.5 - 2.5

# --- Fibrinogen decreased: G1 <1.0 - 0.75 x LLN; if abnormal, <25% decrease from baseline;
#     G2 <0.75 - 0.5 x LLN; 25 - <50%; G3 <0.5 - 0.25 x LLN; 50 - <75%; G4 <0.25 x LLN;
#     75% decrease; absolute value <50 mg/dL
T = "Fibrinogen decreased"
normal = {"lln": 4.0, "baseline": 5.0}  # baseline not below LLN: the LLN multiples apply
edge(T, "g/L", 4.0, 1, 0, 0, 0.01, low=True, **normal)
edge(T, "g/L", 3.0, 2, 1, 1, 0.01, low=True, **normal)
edge(T, "g/L", 2.0, 3, 2, 2, 0.01, low=True, **normal)
edge(T, "g/L", 1.0, 4, 3, 3, 0.01, low=True, **normal)
edge(T, "mg/dL", 150.0, 2, 1, 1, 0.1, low=True, lln=200.0, baseline_abnormal=False)
edge(T, "mg/dL", 100.0, 3, 2, 2, 0.1, low=True, lln=200.0, baseline_abnormal=False)
abnormal = {"lln": 4.0, "baseline": 3.0}  # baseline below LLN: the decrease from baseline
edge(T, "g/L", 3.0, 1, 0, 0, 0.01, low=True, **abnormal)  # any decrease < 25 %
edge(T, "g/L", 2.25, 2, 2, 1, 0.01, low=True, **abnormal)  # 25 % decrease is grade 2
edge(T, "g/L", 1.5, 3, 3, 2, 0.01, low=True, **abnormal)  # 50 %
edge(T, "g/L", 0.75, 4, 4, 3, 0.01, low=True, **abnormal)  # 75 %
edge(T, "g/L", 0.5, 4, 1, 1, 0.01, low=True, lln=4.0, baseline=0.6)  # <50 mg/dL; else -17 %
edge(T, "mg/dL", 50.0, 4, None, None, 0.1, low=True)  # no LLN: only <50 mg/dL is decided
case(T, 3.5, "g/L", 1, lln=4.0)  # no baseline: taken as normal, 0.875 x LLN
# at or before the first infusion: the LLN multiples, whatever the baseline
case(T, 2.9, "g/L", 2, lln=4.0, baseline=2.9, before_first_infusion=True)  # 0.725 x LLN
case(T, 2.9, "g/L", 0, lln=4.0, baseline=2.9)  # after it: no decrease from baseline

# --- Haptoglobin decreased: G1 <LLN (no G2-4)
T = "Haptoglobin decreased"
edge(T, "g/L", 0.3, 1, 0, 0, 0.001, low=True, lln=0.3)
edge(T, "mg/dL", 30.0, 1, 0, 0, 0.1, low=True, lln=30.0)
case(T, 0.01, "g/L", 1, lln=0.3)  # no grade above 1
case(T, 0.2, "g/L", None)  # LLN missing

# --- Blood bicarbonate decreased: G1 <LLN and no intervention initiated (no G2-5)
T = "Blood bicarbonate decreased"
edge(T, "mmol/L", 22.0, 1, 0, 0, 0.01, low=True, lln=22.0)
case(T, 5.0, "mmol/L", 1, lln=22.0)

# --- Thyroid stimulating hormone increased: G1 TSH increased and no intervention initiated
T = "Thyroid stimulating hormone increased"
edge(T, "mIU/L", 4.0, 1, 0, 0, 0.01, low=False, uln=4.0)
edge(T, "uIU/mL", 4.0, 1, 0, 0, 0.01, low=False, uln=4.0)
case(T, 5.0, "mIU/L", None)  # ULN missing

# --- Eosinophilia: G1 >ULN and >Baseline (G3 steroids initiated: clinical)
T = "Eosinophilia"
edge(T, "10^9/L", 0.52, 1, 0, 0, 0.01, low=False, uln=0.52, baseline=0.3)  # normal baseline
edge(T, "10^9/L", 0.8, 1, 0, 0, 0.01, low=False, uln=0.52, baseline=0.8)  # above ULN: above it
case(T, 0.6, "10^9/L", 0, uln=0.52, baseline=0.8)  # >ULN but not >baseline
case(T, 0.6, "10^9/L", 1, uln=0.52)  # no baseline: taken as normal
case(T, 0.8, "10^9/L", 1, uln=0.52, baseline=0.8, before_first_infusion=True)  # >ULN

# --- Methemoglobinemia: G2 >ULN (no G1); G3 urgent intervention, G4 life-threatening: clinical
T = "Methemoglobinemia"
edge(T, "%", 1.5, 2, 0, 0, 0.01, low=False, uln=1.5)
case(T, 40.0, "%", 2, uln=1.5)
case(T, 3.0, "%", None)  # ULN missing

# --- Hypoalbuminemia: G1 <LLN - 3 g/dL; <LLN - 30 g/L; G2 <3 - 2 g/dL; <30 - 20 g/L;
#     G3 <2 g/dL; <20 g/L
T = "Hypoalbuminemia"
edge(T, "g/L", 35.0, 1, 0, 0, 0.1, low=True, lln=35.0)
edge(T, "g/L", 30.0, 2, 1, 1, 0.1, low=True, lln=35.0)
edge(T, "g/L", 20.0, 3, 2, 2, 0.1, low=True, lln=35.0)
edge(T, "g/dL", 3.5, 1, 0, 0, 0.01, low=True, lln=3.5)
edge(T, "g/dL", 3.0, 2, 1, 1, 0.01, low=True, lln=3.5)
edge(T, "g/dL", 2.0, 3, 2, 2, 0.01, low=True, lln=3.5)

# --- Hypokalemia: G1 <LLN - 3.0 mmol/L (G2: symptomatic, same range); G3 <3.0 - 2.5; G4 <2.5
T = "Hypokalemia"
edge(T, "mmol/L", 3.5, 1, 0, 0, 0.01, low=True, lln=3.5)
edge(T, "mmol/L", 3.0, 3, 1, 1, 0.01, low=True, lln=3.5)
edge(T, "mmol/L", 2.5, 4, 3, 3, 0.01, low=True, lln=3.5)
edge(T, "mEq/L", 3.0, 3, 1, 1, 0.01, low=True, lln=3.5)

# --- Hyperkalemia: G1 >ULN - 5.5 mmol/L; G2 >5.5 - 6.0; G3 >6.0 - 7.0; G4 >7.0
T = "Hyperkalemia"
edge(T, "mmol/L", 5.3, 1, 0, 0, 0.01, low=False, uln=5.3)
edge(T, "mmol/L", 5.5, 2, 1, 1, 0.01, low=False, uln=5.3)
edge(T, "mmol/L", 6.0, 3, 2, 2, 0.01, low=False, uln=5.3)
edge(T, "mmol/L", 7.0, 4, 3, 3, 0.01, low=False, uln=5.3)
edge(T, "mEq/L", 6.0, 3, 2, 2, 0.01, low=False, uln=5.3)
case(T, 5.4, "mmol/L", None)

# --- Hyponatremia: G1 <LLN - 130 mmol/L; G2 125-129; G3 120-124 (125-129 symptomatic); G4 <120
T = "Hyponatremia"
edge(T, "mmol/L", 135.0, 1, 0, 0, 0.1, low=True, lln=135.0)
edge(T, "mmol/L", 130.0, 2, 1, 1, 0.1, low=True, lln=135.0)
edge(T, "mmol/L", 125.0, 3, 2, 2, 0.1, low=True, lln=135.0)
edge(T, "mEq/L", 120.0, 4, 3, 3, 0.1, low=True, lln=135.0)

# --- Hypernatremia: G1 >ULN - 150 mmol/L; G2 >150 - 155; G3 >155 - 160; G4 >160
T = "Hypernatremia"
edge(T, "mmol/L", 145.0, 1, 0, 0, 0.1, low=False, uln=145.0)
edge(T, "mmol/L", 150.0, 2, 1, 1, 0.1, low=False, uln=145.0)
edge(T, "mmol/L", 155.0, 3, 2, 2, 0.1, low=False, uln=145.0)
edge(T, "mmol/L", 160.0, 4, 3, 3, 0.1, low=False, uln=145.0)

# --- Hypocalcemia: corrected serum calcium G1 <LLN - 8.0 mg/dL; <LLN - 2.0 mmol/L;
#     G2 <8.0 - 7.0 mg/dL; <2.0 - 1.75 mmol/L; G3 <7.0 - 6.0; <1.75 - 1.5; G4 <6.0; <1.5
#     ionized calcium G1 <LLN - 1.0 mmol/L; G2 <1.0 - 0.9; G3 <0.9 - 0.8; G4 <0.8
for T in ("Hypocalcemia", "Hypocalcemia (total calcium, uncorrected)"):
    edge(T, "mmol/L", 2.1, 1, 0, 0, 0.01, low=True, lln=2.1)
    edge(T, "mmol/L", 2.0, 2, 1, 1, 0.01, low=True, lln=2.1)
    edge(T, "mmol/L", 1.75, 3, 2, 2, 0.01, low=True, lln=2.1)
    edge(T, "mmol/L", 1.5, 4, 3, 3, 0.01, low=True, lln=2.1)
    edge(T, "mg/dL", 8.5, 1, 0, 0, 0.01, low=True, lln=8.5)
    edge(T, "mg/dL", 8.0, 2, 1, 1, 0.01, low=True, lln=8.5)
    edge(T, "mg/dL", 7.0, 3, 2, 2, 0.01, low=True, lln=8.5)
    edge(T, "mg/dL", 6.0, 4, 3, 3, 0.01, low=True, lln=8.5)
    edge(T, "mEq/L", 4.0, 2, 1, 1, 0.01, low=True, lln=4.2)  # divalent: 2.0 mmol/L = 4.0 mEq/L
T = "Hypocalcemia (ionized)"
edge(T, "mmol/L", 1.1, 1, 0, 0, 0.01, low=True, lln=1.1)
edge(T, "mmol/L", 1.0, 2, 1, 1, 0.01, low=True, lln=1.1)
edge(T, "mmol/L", 0.9, 3, 2, 2, 0.01, low=True, lln=1.1)
edge(T, "mmol/L", 0.8, 4, 3, 3, 0.01, low=True, lln=1.1)

# --- Hypercalcemia: corrected G1 >ULN - 11.5 mg/dL; >ULN - 2.9 mmol/L; G2 >11.5 - 12.5; >2.9 - 3.1;
#     G3 >12.5 - 13.5; >3.1 - 3.4; G4 >13.5; >3.4. Ionized G1 >ULN - 1.5; G2 >1.5 - 1.6;
#     G3 >1.6 - 1.8; G4 >1.8 mmol/L
for T in ("Hypercalcemia", "Hypercalcemia (total calcium, uncorrected)"):
    edge(T, "mmol/L", 2.6, 1, 0, 0, 0.01, low=False, uln=2.6)
    edge(T, "mmol/L", 2.9, 2, 1, 1, 0.01, low=False, uln=2.6)
    edge(T, "mmol/L", 3.1, 3, 2, 2, 0.01, low=False, uln=2.6)
    edge(T, "mmol/L", 3.4, 4, 3, 3, 0.01, low=False, uln=2.6)
    edge(T, "mg/dL", 10.5, 1, 0, 0, 0.01, low=False, uln=10.5)
    edge(T, "mg/dL", 11.5, 2, 1, 1, 0.01, low=False, uln=10.5)
    edge(T, "mg/dL", 12.5, 3, 2, 2, 0.01, low=False, uln=10.5)
    edge(T, "mg/dL", 13.5, 4, 3, 3, 0.01, low=False, uln=10.5)
T = "Hypercalcemia (ionized)"
edge(T, "mmol/L", 1.35, 1, 0, 0, 0.01, low=False, uln=1.35)
edge(T, "mmol/L", 1.5, 2, 1, 1, 0.01, low=False, uln=1.35)
edge(T, "mmol/L", 1.6, 3, 2, 2, 0.01, low=False, uln=1.35)
edge(T, "mmol/L", 1.8, 4, 3, 3, 0.01, low=False, uln=1.35)

# --- Hypomagnesemia: G1 <LLN - 1.2 mg/dL; <LLN - 0.5 mmol/L; G2 <1.2 - 0.9 mg/dL; <0.5 - 0.4;
#     G3 <0.9 - 0.7 mg/dL; <0.4 - 0.3; G4 <0.7 mg/dL; <0.3 mmol/L
T = "Hypomagnesemia"
edge(T, "mmol/L", 0.7, 1, 0, 0, 0.01, low=True, lln=0.7)
edge(T, "mmol/L", 0.5, 2, 1, 1, 0.01, low=True, lln=0.7)
edge(T, "mmol/L", 0.4, 3, 2, 2, 0.01, low=True, lln=0.7)
edge(T, "mmol/L", 0.3, 4, 3, 3, 0.01, low=True, lln=0.7)
edge(T, "mg/dL", 1.2, 2, 1, 1, 0.01, low=True, lln=1.7)
edge(T, "mg/dL", 0.9, 3, 2, 2, 0.01, low=True, lln=1.7)
edge(T, "mg/dL", 0.7, 4, 3, 3, 0.01, low=True, lln=1.7)

# --- Hypermagnesemia: G1 >ULN - 3.0 mg/dL; >ULN - 1.23 mmol/L; G3 >3.0 - 8.0 mg/dL;
#     >1.23 - 3.30 mmol/L; G4 >8.0 mg/dL; >3.30 mmol/L (no G2)
T = "Hypermagnesemia"
edge(T, "mmol/L", 1.05, 1, 0, 0, 0.01, low=False, uln=1.05)
edge(T, "mmol/L", 1.23, 3, 1, 1, 0.01, low=False, uln=1.05)
edge(T, "mmol/L", 3.30, 4, 3, 3, 0.01, low=False, uln=1.05)
edge(T, "mg/dL", 3.0, 3, 1, 1, 0.01, low=False, uln=2.6)
edge(T, "mg/dL", 8.0, 4, 3, 3, 0.01, low=False, uln=2.6)

# --- Hypoglycemia: G1 <LLN - 55 mg/dL; <LLN - 3.0 mmol/L; G2 <55 - 40 mg/dL; <3.0 - 2.2 mmol/L;
#     G3 <40 - 30 mg/dL; <2.2 - 1.7 mmol/L; G4 <30 mg/dL; <1.7 mmol/L
T = "Hypoglycemia"
edge(T, "mmol/L", 3.9, 1, 0, 0, 0.01, low=True, lln=3.9)
edge(T, "mmol/L", 3.0, 2, 1, 1, 0.01, low=True, lln=3.9)
edge(T, "mmol/L", 2.2, 3, 2, 2, 0.01, low=True, lln=3.9)
edge(T, "mmol/L", 1.7, 4, 3, 3, 0.01, low=True, lln=3.9)
edge(T, "mg/dL", 70.0, 1, 0, 0, 0.1, low=True, lln=70.0)
edge(T, "mg/dL", 55.0, 2, 1, 1, 0.1, low=True, lln=70.0)
edge(T, "mg/dl", 40.0, 3, 2, 2, 0.1, low=True, lln=70.0)
edge(T, "mg/dL", 30.0, 4, 3, 3, 0.1, low=True, lln=70.0)

# --- Hyperglycemia, Hypo-/Hyperphosphatemia: CTCAE v5.0 grades them on management only
case("Hyperglycemia", 25.0, "mmol/L", None, uln=6.1)
case("Hypophosphatemia", 0.3, "mmol/L", None, lln=0.81)
case("Hyperphosphatemia", 3.0, "mmol/L", None, uln=1.45)

# --- Hypertriglyceridemia: G1 150 - 300 mg/dL; 1.71 - 3.42 mmol/L; G2 >300 - 500; >3.42 - 5.7;
#     G3 >500 - 1000; >5.7 - 11.4; G4 >1000 mg/dL; >11.4 mmol/L
T = "Hypertriglyceridemia"
edge(T, "mmol/L", 1.71, 1, 1, 0, 0.01, low=False)  # "1.71 -": 1.71 itself is grade 1
edge(T, "mmol/L", 3.42, 2, 1, 1, 0.01, low=False)
edge(T, "mmol/L", 5.7, 3, 2, 2, 0.01, low=False)
edge(T, "mmol/L", 11.4, 4, 3, 3, 0.01, low=False)
edge(T, "mg/dL", 150.0, 1, 1, 0, 0.1, low=False)
edge(T, "mg/dL", 300.0, 2, 1, 1, 0.1, low=False)
edge(T, "mg/dL", 500.0, 3, 2, 2, 0.1, low=False)
edge(T, "mg/dL", 1000.0, 4, 3, 3, 0.1, low=False)

# --- Cholesterol high: G1 >ULN - 300 mg/dL; >ULN - 7.75 mmol/L; G2 >300 - 400; >7.75 - 10.34;
#     G3 >400 - 500; >10.34 - 12.92; G4 >500 mg/dL; >12.92 mmol/L
T = "Cholesterol high"
edge(T, "mmol/L", 5.2, 1, 0, 0, 0.01, low=False, uln=5.2)
edge(T, "mmol/L", 7.75, 2, 1, 1, 0.01, low=False, uln=5.2)
edge(T, "mmol/L", 10.34, 3, 2, 2, 0.01, low=False, uln=5.2)
edge(T, "mmol/L", 12.92, 4, 3, 3, 0.01, low=False, uln=5.2)
edge(T, "mg/dL", 300.0, 2, 1, 1, 0.1, low=False, uln=200.0)
edge(T, "mg/dL", 400.0, 3, 2, 2, 0.1, low=False, uln=200.0)
edge(T, "mg/dL", 500.0, 4, 3, 3, 0.1, low=False, uln=200.0)

# --- Hyperuricemia: G1 >ULN without physiologic consequences (G3: with them, clinical)
T = "Hyperuricemia"
edge(T, "umol/L", 420.0, 1, 0, 0, 0.1, low=False, uln=420.0)
edge(T, "mg/dL", 7.0, 1, 0, 0, 0.01, low=False, uln=7.0)
case(T, 1200.0, "umol/L", 1, uln=420.0)

# --- Acidosis: G1 pH <normal, but >=7.3; G3 pH <7.3. Alkalosis: G1 pH >normal, but <=7.5; G3 >7.5
edge("Acidosis", "1", 7.35, 1, 0, 0, 0.01, low=True, lln=7.35)
edge("Acidosis", "1", 7.3, 3, 1, 1, 0.01, low=True, lln=7.35)
case("Acidosis", 7.32, "1", None)  # LLN missing
case("Acidosis", 7.2, "1", 3)
edge("Alkalosis", "1", 7.45, 1, 0, 0, 0.01, low=False, uln=7.45)
edge("Alkalosis", "1", 7.5, 3, 1, 1, 0.01, low=False, uln=7.45)

# --- Fever: G1 38.0 - 39.0 degrees C (100.4 - 102.2 F); G2 >39.0 - 40.0 C (102.3 - 104.0 F);
#     G3 >40.0 C (>104.0 F) for <=24 hrs
T = "Fever"
edge(T, "degC", 38.0, 1, 1, 0, 0.01, low=False)
edge(T, "°C", 39.0, 2, 1, 1, 0.01, low=False)
edge(T, "degC", 40.0, 3, 2, 2, 0.01, low=False)
edge(T, "degF", 100.4, 1, 1, 0, 0.01, low=False)
edge(T, "°F", 102.2, 2, 1, 1, 0.01, low=False)
edge(T, "degF", 104.0, 3, 2, 2, 0.01, low=False)

# --- units that cannot be converted are not gradable, never guessed
case("Alanine aminotransferase increased", 130.0, "mg/dL", None, uln=40.0)
case("Creatinine increased", 2.0, "mEq/L", None, uln=1.2)
case("Anemia", 9.0, "10^9/L", None, lln=12.0)
case("Lymphocyte count decreased", 30.0, "%", None, lln=20.0)  # a percentage is not a count


def _id(c: Case) -> str:
    term, value, unit, kw, expected = c
    extra = ",".join(f"{k}={v}" for k, v in kw.items())
    return f"{term}|{value:g} {unit}|{extra}->{expected}"


@pytest.mark.parametrize(("term", "value", "unit", "kw", "expected"), CASES, ids=map(_id, CASES))
def test_boundary(term: str, value: float, unit: str, kw: dict, expected: int | None) -> None:
    assert grade_lab(term, value, unit, **kw) == expected


def test_every_numeric_term_is_covered() -> None:
    from celltrial.safety import load_ctcae_criteria

    numeric = {name for name, t in load_ctcae_criteria().terms.items() if t.numeric}
    assert numeric <= {c[0] for c in CASES}
