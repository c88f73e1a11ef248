"""Gradient-boosted decision trees evaluated with numpy (no scikit-learn at run time).

A model is a set of regression trees flattened into arrays (one ``.npz`` file): per node the
feature index, threshold, children and leaf value, plus per tree its first node and the class it
scores. Class scores are the baseline plus the sum of the leaf values of that class's trees; the
probabilities their softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BoostedTrees:
    """Flattened trees of a multi-class gradient-boosted classifier."""

    feature: np.ndarray  # int32 per node
    threshold: np.ndarray  # float32 per node; x <= threshold goes left
    left: np.ndarray  # int32 per node (absolute index)
    right: np.ndarray  # int32 per node (absolute index)
    value: np.ndarray  # float32 per node (leaf value)
    is_leaf: np.ndarray  # bool per node
    roots: np.ndarray  # int32 per tree
    tree_class: np.ndarray  # int32 per tree
    baseline: np.ndarray  # float32 per class
    max_depth: int
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.baseline)

    def compute_scores(self, x: np.ndarray, *, chunk: int = 16384) -> np.ndarray:
        """Raw class scores for rows of ``x`` (n, n_features) → (n, n_classes) float32."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty((len(x), self.n_classes), dtype=np.float32)
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = self._scores(x[start : start + chunk])
        return out

    def compute_probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax of the scores), (n, n_classes) float32."""
        scores = self.compute_scores(x)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def _scores(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        node = np.broadcast_to(self.roots[:, None], (len(self.roots), n)).copy()
        rows = np.arange(n)[None, :]
        for _ in range(self.max_depth):
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            values = x[rows, self.feature[node]]
            step = np.where(values <= self.threshold[node], self.left[node], self.right[node])
            node = np.where(leaf, node, step)
        leaf_values = self.value[node]  # (n_trees, n)
        scores = np.tile(self.baseline[None, :], (n, 1)).astype(np.float32)
        for c in range(self.n_classes):
            scores[:, c] += leaf_values[self.tree_class == c].sum(axis=0)
        return scores

    def write(self, path: Path) -> None:
        """Save as a compressed ``.npz`` (the shipped model format)."""
        np.savez_compressed(
            path,
            feature=self.feature.astype(np.int16),
            threshold=self.threshold.astype(np.float32),
            left=self.left.astype(np.int32),
            right=self.right.astype(np.int32),
            value=self.value.astype(np.float32),
            is_leaf=self.is_leaf,
            roots=self.roots.astype(np.int32),
            tree_class=self.tree_class.astype(np.int16),
            baseline=self.baseline.astype(np.float32),
            max_depth=np.int32(self.max_depth),
            classes=np.array(self.classes),
            feature_names=np.array(self.feature_names),
        )


def read_boosted_trees(path: Path) -> BoostedTrees:
    """Load a model written by :meth:`BoostedTrees.write`."""
    with np.load(path, allow_pickle=False) as data:
        return BoostedTrees(
            feature=data["feature"].astype(np.int32),
            threshold=data["threshold"],
            left=data["left"],
            right=data["right"],
            value=data["value"],
            is_leaf=data["is_leaf"],
            roots=data["roots"],
            tree_class=data["tree_class"].astype(np.int32),
            baseline=data["baseline"],
            max_depth=int(data["max_depth"]),
            classes=tuple(str(c) for c in data["classes"]),
            feature_names=tuple(str(c) for c in data["feature_names"]),
        )


def from_sklearn(model, *, classes: tuple[str, ...], feature_names: list[str]) -> BoostedTrees:
    """Flatten a fitted ``sklearn`` HistGradientBoostingClassifier (training time only)."""
    feature, threshold, left, right, value, is_leaf, roots, tree_class = ([] for _ in range(8))
    offset = 0
    max_depth = 0
    for iteration in model._predictors:
        for c, predictor in enumerate(iteration):
            nodes = predictor.nodes
            roots.append(offset)
            tree_class.append(c)
            feature.append(nodes["feature_idx"])
            threshold.append(nodes["num_threshold"])
            left.append(np.where(nodes["is_leaf"], 0, nodes["left"]) + offset)
            right.append(np.where(nodes["is_leaf"], 0, nodes["right"]) + offset)
            value.append(nodes["value"])
            is_leaf.append(nodes["is_leaf"].astype(bool))
            max_depth = max(max_depth, int(nodes["depth"].max()))
            offset += len(nodes)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float32).ravel()
    if baseline.size == 1:  # binary: score of class 1 against a zero score of class 0
        raise ValueError("only multi-class models are supported")
    return BoostedTrees(
        feature=np.concatenate(feature).astype(np.int32),
        threshold=np.concatenate(threshold).astype(np.float32),
        left=np.concatenate(left).astype(np.int32),
        right=np.concatenate(right).astype(np.int32),
        value=np.concatenate(value).astype(np.float32),
        is_leaf=np.concatenate(is_leaf),
        roots=np.asarray(roots, dtype=np.int32),
        tree_class=np.asarray(tree_class, dtype=np.int32),
        baseline=baseline,
        max_depth=max_depth + 1,
        classes=classes,
        feature_names=tuple(feature_names),
    )


__all__ = ["BoostedTrees", "from_sklearn", "read_boosted_trees"]
