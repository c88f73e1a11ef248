"""Labelled 2-D slices, the rule that turns learned class probabilities into labels, Dice, and
the gradient-boosted pixel model (the lesion network's predecessor, kept as the benchmark's
comparison; see :mod:`celltrial.imaging.network` for the model in use).

Run-time code needs only numpy/SciPy; :func:`train_lesion_model` imports scikit-learn (a
training-only dependency) when called.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage as ndi

from celltrial.errors import CelltrialError
from celltrial.imaging.features import compute_pixel_features, estimate_pixel_mm, feature_names
from celltrial.imaging.trees import BoostedTrees, from_sklearn

CLASSES = ("none", "ground_glass", "consolidation")
#: Default lung window used to map display values back to HU.
DEFAULT_WINDOW = (1500.0, -600.0)


@dataclass(frozen=True)
class LabelledSlice:
    """One labelled slice: approximate HU, labels (0 none, 1 GGO, 2 consolidation), pixel mm."""

    name: str
    hu: np.ndarray
    labels: np.ndarray
    pixel_mm: float


def compute_display_to_hu(values: np.ndarray, *, window: tuple[float, float] = DEFAULT_WINDOW):
    """Map 8-bit display values (0–255, lung window ``(width, level)``) to approximate HU."""
    width, level = window
    return (np.asarray(values, dtype=np.float32) / 255.0 - 0.5) * width + level


def read_medseg_slices(root: Path) -> list[LabelledSlice]:
    """The labelled slices of a ``medseg2d`` folder (``train_NNN/`` with image and labels)."""
    import nibabel as nib

    folders = sorted(p for p in Path(root).glob("train_*") if p.is_dir())
    if not folders:
        raise CelltrialError(f"{root}: no train_NNN/ folders with labelled slices found")
    out = []
    for folder in folders:
        image = np.asanyarray(nib.load(folder / "image.nii.gz").dataobj)[..., 0]
        labels = np.asanyarray(nib.load(folder / "ggo_consolidation.nii.gz").dataobj)[..., 0]
        hu = compute_display_to_hu(image)
        out.append(
            LabelledSlice(folder.name, hu, labels.astype(np.uint8), estimate_pixel_mm(hu.shape))
        )
    return out


def sample_pixels(
    slices: list[LabelledSlice], *, per_slice: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of pixels drawn from each slice, lesion pixels over-represented."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for item in slices:
        features = compute_pixel_features(item.hu, pixel_mm=item.pixel_mm)
        flat = features.reshape(-1, features.shape[-1])
        labels = item.labels.ravel()
        weights = np.where(labels > 0, 3.0, 1.0)
        weights /= weights.sum()
        take = rng.choice(labels.size, size=min(per_slice, labels.size), replace=False, p=weights)
        xs.append(flat[take])
        ys.append(labels[take])
    return np.concatenate(xs), np.concatenate(ys)


def train_lesion_model(
    slices: list[LabelledSlice],
    *,
    seed: int = 0,
    per_slice: int = 6000,
    max_iter: int = 150,
    max_leaf_nodes: int = 31,
    learning_rate: float = 0.1,
) -> BoostedTrees:
    """Fit a gradient-boosted pixel classifier (scikit-learn, training only) and flatten it."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = sample_pixels(slices, per_slice=per_slice, seed=seed)
    model = HistGradientBoostingClassifier(
        max_iter=max_iter,
        max_leaf_nodes=max_leaf_nodes,
        learning_rate=learning_rate,
        l2_regularization=1.0,
        random_state=seed,
        early_stopping=False,
    )
    model.fit(x, y)
    return from_sklearn(model, classes=CLASSES, feature_names=feature_names())


def compute_slice_probabilities(model: BoostedTrees, hu: np.ndarray, pixel_mm: float):
    """Class probabilities of each pixel of a slice, (rows, cols, 3) float32, lightly smoothed."""
    features = compute_pixel_features(hu, pixel_mm=pixel_mm)
    probs = model.compute_probabilities(features.reshape(-1, features.shape[-1]))
    probs = probs.reshape(*hu.shape, model.n_classes)
    sigma = 0.7 / pixel_mm
    return np.stack([ndi.gaussian_filter(probs[..., c], sigma) for c in range(3)], axis=-1)


@dataclass(frozen=True)
class LabelRule:
    """How probabilities of (none, ground-glass, consolidation) become labels."""

    lesion_threshold: float = 0.5
    consolidation_weight: float = 1.0


@functools.cache
def load_label_rule() -> LabelRule:
    """The shipped rule (``models/labels.yaml``, chosen by cross-validation; see there)."""
    text = (resources.files("celltrial.imaging") / "models" / "labels.yaml").read_text()
    return LabelRule(**yaml.safe_load(text))


def compute_slice_labels(
    probs: np.ndarray,
    *,
    lesion_threshold: float | None = None,
    consolidation_weight: float | None = None,
) -> np.ndarray:
    """Labels from probabilities: lesion where P(lesion) ≥ ``lesion_threshold``; consolidation
    where ``consolidation_weight`` × P(consolidation) > P(ground-glass), else ground-glass.
    Unset: the shipped rule (:func:`load_label_rule`)."""
    rule = load_label_rule()
    threshold = rule.lesion_threshold if lesion_threshold is None else lesion_threshold
    weight = rule.consolidation_weight if consolidation_weight is None else consolidation_weight
    lesion = probs[..., 1] + probs[..., 2] >= threshold
    kind = np.where(weight * probs[..., 2] > probs[..., 1], 2, 1)
    return np.where(lesion, kind, 0).astype(np.uint8)


def compute_dice(truth: np.ndarray, found: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (NaN when both are empty)."""
    t, f = np.asarray(truth, bool), np.asarray(found, bool)
    total = t.sum() + f.sum()
    return float(2.0 * (t & f).sum() / total) if total else float("nan")


def summarize_dice(name: str, truth: np.ndarray, found: np.ndarray) -> dict[str, object]:
    """Lesion, ground-glass and consolidation Dice of one slice."""
    return {
        "slice": name,
        "lesion": compute_dice(truth > 0, found > 0),
        "ground_glass": compute_dice(truth == 1, found == 1),
        "consolidation": compute_dice(truth == 2, found == 2),
    }


def compute_folds(n: int, *, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of each of ``n`` items, seeded and balanced."""
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=int)
    folds[order] = np.arange(n) % k
    return folds


def summarize_fold_dice(
    slices: list[LabelledSlice],
    folds: np.ndarray,
    probabilities: dict[str, np.ndarray],
    *,
    lesion_threshold: float | None = None,
    consolidation_weight: float | None = None,
) -> pd.DataFrame:
    """Per-slice Dice (and fold) of the labels that ``probabilities`` give each slice (the
    shipped rule unless given)."""
    rows = []
    for s, fold in zip(slices, folds, strict=True):
        found = compute_slice_labels(
            probabilities[s.name],
            lesion_threshold=lesion_threshold,
            consolidation_weight=consolidation_weight,
        )
        rows.append({**summarize_dice(s.name, s.labels, found), "fold": int(fold)})
    return pd.DataFrame(rows)


__all__ = [
    "CLASSES",
    "DEFAULT_WINDOW",
    "LabelRule",
    "LabelledSlice",
    "compute_dice",
    "compute_display_to_hu",
    "compute_folds",
    "compute_slice_labels",
    "compute_slice_probabilities",
    "load_label_rule",
    "read_medseg_slices",
    "sample_pixels",
    "summarize_dice",
    "summarize_fold_dice",
    "train_lesion_model",
]
