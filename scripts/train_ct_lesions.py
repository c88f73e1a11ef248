"""Train the learned CT lesion model and write it into the package.

    python scripts/train_ct_lesions.py [--data ../shared/data/ct/medseg2d] [--seed 0]

Trains a gradient-boosted pixel classifier (scikit-learn HistGradientBoostingClassifier, a
training-only dependency) on all labelled medseg2d slices, flattens it to numpy arrays and writes
``src/celltrial/imaging/models/lesions.npz`` (run time needs numpy/SciPy only). Reproducible: the
seed fixes pixel sampling and the model. Cross-validated accuracy: benchmarks/bench_ct_accuracy.py.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct" / "medseg2d"
OUTPUT = ROOT / "src" / "celltrial" / "imaging" / "models" / "lesions.npz"
#: Training settings shared with the cross-validation benchmark.
SETTINGS = {"per_slice": 4000, "max_iter": 100, "max_leaf_nodes": 31, "learning_rate": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from celltrial.imaging.learning import read_medseg_slices, train_lesion_model

    started = time.perf_counter()
    slices = read_medseg_slices(args.data)
    model = train_lesion_model(slices, seed=args.seed, **SETTINGS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.write(args.out)
    size = args.out.stat().st_size / 1e6
    print(f"trained on {len(slices)} slices in {time.perf_counter() - started:.0f} s")
    print(f"{len(model.roots)} trees, {len(model.feature)} nodes → {args.out} ({size:.2f} MB)")


if __name__ == "__main__":
    main()
