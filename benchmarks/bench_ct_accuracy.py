"""Lesion Dice on the 50 radiologist-labelled medseg2d slices, 5-fold cross-validation.

    python benchmarks/bench_ct_accuracy.py [--data ../shared/data/ct/medseg2d] [--folds 5]
        [--cache benchmarks/out/ct-cv] [--no-network]

For each fold, two learned models are trained on the other folds with the settings of their
training scripts — the lesion network that celltrial ships (scripts/train_ct_unet.py, PyTorch
from ``.[train]``, about 30 min a fold on 2 cores) and the gradient-boosted pixel model before it
(scripts/train_ct_lesions.py, about 2 min a fold) — and give their probabilities for the fold's
slices. Prints per-slice lesion (any), ground-glass and consolidation Dice of the network, then
the means of the network, of the pixel model, of their average (its weight chosen for each fold
on the other folds) and of a plain threshold baseline (ground-glass −700…−300 HU, consolidation
≥ −300 HU inside the closed aerated region).

Each fold's probabilities are kept in ``--cache`` under a name made of the fold, the seed and a
digest of the training settings and code, so that a second run (or a run after training one model
anew) only evaluates. Dice is NaN where a slice has neither truth nor finding of that class; means
skip NaN. Folds split slices, not patients (patient ids are not published), so slices of one
patient may sit in training and test folds.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ct" / "medseg2d"
DEFAULT_CACHE = ROOT / "benchmarks" / "out" / "ct-cv"
COLUMNS = ["lesion", "ground_glass", "consolidation"]
TARGETS = [0.75, 0.65, 0.50]
WEIGHTS = np.round(np.arange(0.0, 1.01, 0.125), 3)


def threshold_baseline(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    from celltrial.imaging.features import _lung_depth

    air = (hu < -750).astype(np.float32)
    region = _lung_depth(air, pixel_mm) > 0
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[region & (hu >= -700) & (hu < -300)] = 1
    labels[region & (hu >= -300)] = 2
    return labels


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


#: Parts of a training module that do not change how one model is trained: which members the
#: shipped network averages, and the command line.
NOT_TRAINING = ("MEMBERS", "main")
#: Nodes that may open with a docstring.
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _code(source: Path) -> str:
    """What a training module does, without its docstrings (and comments), its list of members
    and its command line: the part of the cache key that an edit of its documentation, or a
    member added, leaves as it was."""
    tree = ast.parse(source.read_text())
    tree.body = [node for node in tree.body if _defined_name(node) not in NOT_TRAINING]
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _defined_name(node: ast.stmt) -> str | None:
    """The name a top-level function, class or (annotated) assignment defines."""
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return node.name
    target = node.target if isinstance(node, ast.AnnAssign) else None
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    return target.id if isinstance(target, ast.Name) else None


def fold_probabilities(
    slices, folds, *, cache: Path, name: str, seed: int, settings: object, source: Path, train
) -> dict[str, np.ndarray]:
    """Each slice's probabilities from a model trained on the other folds, kept per fold in
    ``cache`` (``train(training_slices, fold) -> predict(slice) -> probabilities``)."""
    cache.mkdir(parents=True, exist_ok=True)
    key = _digest(settings, _code(source))
    out: dict[str, np.ndarray] = {}
    for fold in sorted(set(folds.tolist())):
        kept = cache / f"{name}-fold{fold}-seed{seed}-{key}.npz"
        tested = [s for s, f in zip(slices, folds, strict=True) if f == fold]
        if not kept.exists():
            started = time.perf_counter()
            print(f"{name}: training fold {fold} …", flush=True)
            predict = train([s for s, f in zip(slices, folds, strict=True) if f != fold], fold)
            probs = {s.name: predict(s).astype(np.float16) for s in tested}
            np.savez_compressed(kept, **probs)
            print(f"{name}: fold {fold} in {time.perf_counter() - started:.0f} s", flush=True)
        with np.load(kept) as stored:
            out.update({s.name: stored[s.name].astype(np.float32) for s in tested})
    return out


def pixel_trainer(seed: int) -> Callable:
    from train_ct_lesions import SETTINGS

    from celltrial.imaging.learning import compute_slice_probabilities, train_lesion_model

    def train(training, fold):
        model = train_lesion_model(training, seed=seed + fold, **SETTINGS)
        return lambda s: compute_slice_probabilities(model, s.hu, s.pixel_mm)

    return train


def network_trainer(seed: int, cache: Path, member) -> Callable:
    from dataclasses import replace

    from train_ct_unet import export_onnx, train_unet

    from celltrial.imaging.network import compute_network_probabilities, load_network

    def train(training, fold):
        settings = replace(member, seed=member.seed + seed + fold)
        model = train_unet(training, settings, log=lambda m: print(" ", m))
        path = cache / f"network-s{member.seed}-fold{fold}-seed{seed}.onnx"
        export_onnx(model, path)
        session = load_network(path)
        return lambda s: compute_network_probabilities(s.hu[None], network=session)[0]

    return train


def choose_weights(slices, folds, network, pixel) -> tuple[pd.DataFrame, list[float]]:
    """Dice of every weight of the network in its average with the pixel model on each fold, and
    for each fold the weight that is best (mean lesion Dice) on the other folds, with that fold's
    Dice under it."""
    from celltrial.imaging.learning import summarize_fold_dice

    tables = []
    for weight in WEIGHTS:
        probs = {n: weight * network[n] + (1 - weight) * pixel[n] for n in network}
        tables.append(summarize_fold_dice(slices, folds, probs).assign(weight=weight))
    every = pd.concat(tables, ignore_index=True)
    chosen, rows = [], []
    for fold in sorted(set(folds.tolist())):
        others = every[every["fold"] != fold].groupby("weight")["lesion"].mean()
        best = float(others.idxmax())
        chosen.append(best)
        rows.append(every[(every["fold"] == fold) & (every["weight"] == best)])
    return pd.concat(rows, ignore_index=True), chosen


#: Consolidation weights tried by :func:`choose_consolidation_weight`.
CONSOLIDATION_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 1.0)


def choose_consolidation_weight(slices, folds, network) -> tuple[pd.DataFrame, list[float]]:
    """For each fold, the consolidation weight of the label rule that is best on the other folds
    (mean ground-glass plus consolidation Dice), with that fold's Dice under it: how the shipped
    weight (``models/labels.yaml``) was chosen, without looking at the fold it is scored on."""
    from celltrial.imaging.learning import summarize_fold_dice

    every = pd.concat(
        [
            summarize_fold_dice(slices, folds, network, consolidation_weight=w).assign(weight=w)
            for w in CONSOLIDATION_WEIGHTS
        ],
        ignore_index=True,
    )
    chosen, rows = [], []
    for fold in sorted(set(folds.tolist())):
        others = every[every["fold"] != fold].groupby("weight")
        score = others["ground_glass"].mean() + others["consolidation"].mean()
        best = float(score.idxmax())
        chosen.append(best)
        rows.append(every[(every["fold"] == fold) & (every["weight"] == best)])
    return pd.concat(rows, ignore_index=True), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--no-network", action="store_true", help="the pixel model only (no PyTorch needed)"
    )
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} is absent")
        return
    import train_ct_lesions

    from celltrial.imaging.learning import (
        compute_folds,
        read_medseg_slices,
        summarize_dice,
        summarize_fold_dice,
    )

    started = time.perf_counter()
    slices = read_medseg_slices(args.data)
    folds = compute_folds(len(slices), k=args.folds, seed=args.seed)
    results = {
        "threshold baseline": pd.DataFrame(
            [summarize_dice(s.name, s.labels, threshold_baseline(s.hu, s.pixel_mm)) for s in slices]
        )
    }
    common = {"cache": args.cache, "seed": args.seed}
    pixel = fold_probabilities(
        slices,
        folds,
        name="pixel",
        settings=train_ct_lesions.SETTINGS,
        source=ROOT / "src" / "celltrial" / "imaging" / "features.py",
        train=pixel_trainer(args.seed),
        **common,
    )
    results["pixel model"] = summarize_fold_dice(slices, folds, pixel)
    network = None
    if not args.no_network:
        try:
            import train_ct_unet

            members = [
                fold_probabilities(
                    slices,
                    folds,
                    name=f"network-s{member.seed}",
                    settings=member,
                    source=ROOT / "scripts" / "train_ct_unet.py",
                    train=network_trainer(args.seed, args.cache, member),
                    **common,
                )
                for member in train_ct_unet.MEMBERS
            ]
            network = {n: np.mean([m[n] for m in members], axis=0) for n in members[0]}
        except ImportError as exc:
            print(f"the lesion network is left out: {exc} (pip install -e '.[train]')")
    if network is not None:
        for member, probs in zip(train_ct_unet.MEMBERS, members, strict=True):
            results[f"network member (seed {member.seed}) alone"] = summarize_fold_dice(
                slices, folds, probs
            )
        results["network (shipped)"] = summarize_fold_dice(slices, folds, network)
        results["network, consolidation weight 1"] = summarize_fold_dice(
            slices, folds, network, consolidation_weight=1.0
        )
        results["network, consolidation weight from other folds"], weights = (
            choose_consolidation_weight(slices, folds, network)
        )
        nested, chosen = choose_weights(slices, folds, network, pixel)
        results["average, weight from other folds"] = nested
    pd.set_option("display.width", 160)
    shown = "network (shipped)" if network is not None else "pixel model"
    table = results[shown][["slice", *COLUMNS]]
    print(f"per slice ({shown}):")
    print(table.round(3).to_string(index=False))
    print()
    means = pd.DataFrame({name: frame[COLUMNS].mean() for name, frame in results.items()})
    means["target"] = TARGETS
    print(means.T.round(3).to_string())
    if network is not None:
        print(f"\nconsolidation weight chosen fold by fold (on the other folds): {weights}")
        print(f"weight of the network chosen fold by fold (on the other folds): {chosen}")
    print(f"\n{len(slices)} slices, {args.folds} folds, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
