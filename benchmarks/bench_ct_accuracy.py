"""Lesion Dice on the 50 radiologist-labelled medseg2d slices, 5-fold cross-validation.

    python benchmarks/bench_ct_accuracy.py [--data ../shared/data/ct/medseg2d] [--folds 5]

Prints per-slice lesion (any), ground-glass and consolidation Dice of the learned model (trained
on the other folds with the settings of scripts/train_ct_lesions.py) beside a plain threshold
baseline (ground-glass −700…−300 HU, consolidation ≥ −300 HU inside the closed aerated region), and
their means. Dice is NaN where a slice has neither truth nor finding of that class; means skip NaN.
Folds split slices, not patients (patient ids are not published), so slices of one patient may
sit in training and test folds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct" / "medseg2d"


def threshold_baseline(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    from celltrial.imaging.features import _lung_depth

    air = (hu < -750).astype(np.float32)
    region = _lung_depth(air, pixel_mm) > 0
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[region & (hu >= -700) & (hu < -300)] = 1
    labels[region & (hu >= -300)] = 2
    return labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} is absent")
        return
    from train_ct_lesions import SETTINGS

    from celltrial.imaging.learning import cross_validate, read_medseg_slices, summarize_dice

    started = time.perf_counter()
    slices = read_medseg_slices(args.data)
    base = pd.DataFrame(
        [summarize_dice(s.name, s.labels, threshold_baseline(s.hu, s.pixel_mm)) for s in slices]
    )
    learned = cross_validate(slices, k=args.folds, seed=args.seed, **SETTINGS)
    table = learned.merge(base, on="slice", suffixes=("", "_threshold"))
    pd.set_option("display.width", 140)
    print(table.round(3).to_string(index=False))
    print()
    columns = ["lesion", "ground_glass", "consolidation"]
    means = pd.DataFrame(
        {
            "learned (5-fold CV)": learned[columns].mean(),
            "threshold baseline": base[columns].mean(),
            "target": [0.75, 0.65, 0.50],
        }
    )
    print(means.round(3).to_string())
    print(f"\n{len(slices)} slices, {args.folds} folds, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
