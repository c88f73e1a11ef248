"""Quantification of lungs and lesions: mL, % involvement per lung and zone, severity score.

The semi-quantitative score gives each of six zones (upper, middle, lower third of each lung)
0–5 by the % of the zone involved by any lesion (edges in ``bands.yaml``); the total is 0–30.
Mean lung density and the share of well-aerated lung come from the density bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from celltrial.errors import CelltrialError
from celltrial.imaging.lungs import LEFT, RIGHT, ZONES, compute_zone_bounds

SIDES = {RIGHT: "right", LEFT: "left"}


@cache
def load_bands() -> dict[str, Any]:
    """The shipped density bands and score edges, validated."""
    text = (resources.files("celltrial.imaging") / "bands.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    bands = data.get("bands", {})
    for name in ("well_aerated", "ground_glass", "consolidation"):
        low, high = bands.get(name, (None, None))
        if low is None or high is None or not low < high:
            raise CelltrialError(f"bands.yaml: band {name!r} needs [low, high] with low < high")
    edges = data.get("score_edges_pct", [])
    if len(edges) != 5 or sorted(edges) != edges:
        raise CelltrialError("bands.yaml: score_edges_pct needs 5 increasing % values")
    return data


def compute_zone_score(involvement_pct: float) -> int:
    """0–5 score of one zone from its % involvement (0 below the minimum that counts)."""
    bands = load_bands()
    edges = bands["score_edges_pct"]
    if involvement_pct <= edges[0] or involvement_pct < bands.get("score_min_involved_pct", 0):
        return 0
    return 1 + int(np.searchsorted(edges[1:], involvement_pct, side="right"))


@dataclass(frozen=True)
class CtQuantification:
    """Volumes and scores of one scan. ``summary``: one row per lung × zone (and totals)."""

    summary: pd.DataFrame
    lung_ml: float
    ground_glass_ml: float
    consolidation_ml: float
    involvement_pct: float
    score: int
    mean_lung_density_hu: float
    well_aerated_pct: float
    method: str
    caveats: tuple[str, ...] = ()
    zones: dict[str, Any] = field(default_factory=dict)

    @property
    def lesion_ml(self) -> float:
        return self.ground_glass_ml + self.consolidation_ml

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (``result.json``, ``ct_result`` row)."""
        return {
            "method": self.method,
            "lung_volume_ml": round(self.lung_ml, 2),
            "ggo_volume_ml": round(self.ground_glass_ml, 2),
            "consolidation_volume_ml": round(self.consolidation_ml, 2),
            "lesion_volume_ml": round(self.lesion_ml, 2),
            "involvement_pct": round(self.involvement_pct, 3),
            "score": self.score,
            "mean_lung_density_hu": round(self.mean_lung_density_hu, 1),
            "well_aerated_pct": round(self.well_aerated_pct, 2),
            "zones": self.zones,
            "caveats": list(self.caveats),
        }


def summarize_ct(
    hu: np.ndarray,
    lungs: np.ndarray,
    lesions: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    method: str = "density",
    caveats: tuple[str, ...] = (),
    uncovered: frozenset[str] = frozenset(),
) -> CtQuantification:
    """Quantify one scan from its HU, lung labels and lesion labels (all internal orientation).

    Zones in ``uncovered`` (``upper``, ``lower``: the scan cut the lungs there) get no score
    (``None``); the total is then the sum over the zones scored.
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    bands = load_bands()["bands"]
    low, high = bands["well_aerated"]
    per_slice, hu_sum, aerated_n = _count_slices(hu, lungs, lesions, low, high)
    # counts[lung (0..2), zone (0 none, 1..3), lesion (0..2)]
    counts = np.zeros((3, 4, 3), dtype=np.int64)
    for value in (RIGHT, LEFT):
        bounds = compute_zone_bounds(per_slice[:, value].sum(axis=1) > 0)
        for zone, (lo, hi) in enumerate(bounds, start=1):
            counts[value, zone] = per_slice[lo:hi, value].sum(axis=0)
    counts = counts * voxel_ml
    rows = []
    for side_value, side in SIDES.items():
        for zone_index, zone in enumerate(ZONES, start=1):
            rows.append(_row(side, zone, counts[side_value, zone_index], zone in uncovered))
        rows.append(_row(side, "all", counts[side_value, 1:].sum(axis=0)))
    rows.append(_row("both", "all", counts[1:, 1:].sum(axis=(0, 1))))
    summary = pd.DataFrame(rows)
    zone_rows = summary[summary["zone"] != "all"]
    score = int(zone_rows["score"].dropna().sum())
    total = summary.iloc[-1]
    n_lung = int(per_slice[:, 1:].sum())
    mean_density = hu_sum / n_lung if n_lung else float("nan")
    aerated = 100.0 * aerated_n / n_lung if n_lung else 0.0
    zone_dict = {
        f"{r.lung}_{r.zone}": {
            "lung_ml": round(r.lung_ml, 2),
            "ggo_ml": round(r.ggo_ml, 2),
            "consolidation_ml": round(r.consolidation_ml, 2),
            "involvement_pct": round(r.involvement_pct, 3),
            "score": None if r.score is None or r.score != r.score else int(r.score),
        }
        for r in summary.itertuples()
    }
    return CtQuantification(
        summary=summary,
        lung_ml=float(total["lung_ml"]),
        ground_glass_ml=float(total["ggo_ml"]),
        consolidation_ml=float(total["consolidation_ml"]),
        involvement_pct=float(total["involvement_pct"]),
        score=score,
        mean_lung_density_hu=mean_density,
        well_aerated_pct=aerated,
        method=method,
        caveats=tuple(caveats),
        zones=zone_dict,
    )


def _count_slices(
    hu: np.ndarray, lungs: np.ndarray, lesions: np.ndarray, low: float, high: float
) -> tuple[np.ndarray, float, int]:
    """Voxels per slice × lung label × lesion label, and the lungs' HU sum and aerated count.

    Slice by slice, so that no temporary is larger than a slice (a whole-volume key or HU
    selection would cost several times the volume's memory).
    """
    nz = lungs.shape[0]
    per_slice = np.zeros((nz, 3, 3), dtype=np.int64)
    hu_sum = 0
    aerated = 0
    three = np.uint8(3)
    for k in range(nz):
        lung_k = lungs[k]
        if not lung_k.any():
            continue
        key = lung_k.astype(np.uint8) * three
        key += lesions[k].astype(np.uint8, copy=False)
        per_slice[k] = np.bincount(key.ravel(), minlength=9).reshape(3, 3)
        values = hu[k][lung_k > 0]
        hu_sum += int(values.sum(dtype=np.int64))
        aerated += int(np.count_nonzero((values >= low) & (values < high)))
    return per_slice, float(hu_sum), aerated


def _row(lung: str, zone: str, counts: np.ndarray, uncovered: bool = False) -> dict[str, Any]:
    lung_ml = float(counts.sum())
    ggo, cons = float(counts[1]), float(counts[2])
    pct = 100.0 * (ggo + cons) / lung_ml if lung_ml > 0 else 0.0
    return {
        "lung": lung,
        "zone": zone,
        "lung_ml": lung_ml,
        "ggo_ml": ggo,
        "consolidation_ml": cons,
        "lesion_ml": ggo + cons,
        "ggo_pct": 100.0 * ggo / lung_ml if lung_ml > 0 else 0.0,
        "consolidation_pct": 100.0 * cons / lung_ml if lung_ml > 0 else 0.0,
        "involvement_pct": pct,
        "score": None if uncovered else (compute_zone_score(pct) if zone != "all" else 0),
    }


__all__ = ["CtQuantification", "compute_zone_score", "load_bands", "summarize_ct"]
