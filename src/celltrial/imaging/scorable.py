"""Whether a segmented scan can be scored: enough lung along z, lungs inside the field of view,
a chest rather than an abdomen with the lung bases; which zones the scan covers.

A chest CT holds both lungs from the apices to the bases. A scan whose lungs reach its top slice
with a large area has cut the apices off (an abdominal CT shows only the bases); one whose lungs
reach its bottom slice with a large area has cut the bases off. The zones there cannot be
scored: the thirds of a lung's height are not known when its height is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from celltrial.imaging.io import ImagingError

#: Fewest slices and millimetres of lung along z that a score over zones needs.
MIN_LUNG_SLICES = 5
MIN_LUNG_MM = 40.0
#: Lungs reaching the image's edge in more than this share of their slices are cut by the field
#: of view (a crop, a small reconstruction field): volumes and scores would be partial.
MAX_CUT_SHARE = 0.10
#: A lung's area in the scan's first or last slice above this share of its largest slice area
#: means the scan cut that lung there (apex or base outside the scan).
CUT_AREA_SHARE = 0.25
#: Lungs cut at the top whose widest slice lies in this top share of their slices: bases only.
BASES_TOP_SHARE = 0.2
#: ... or whose top slice holds at least this share of their largest slice area.
BASES_TOP_AREA = 0.8


class NotScorable(ImagingError):
    """A CT that was read but cannot be scored (not a chest, too little lung, cut lungs)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: not scored: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Coverage:
    """What the scan covers: zones (``upper``/``lower``) left unscored, and notes."""

    uncovered: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


def assess_coverage(
    lungs: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    source: str,
    cut_share: float = 0.0,
) -> Coverage:
    """Check that a scan's lungs (labels, internal orientation, z grows superior) can be scored.

    Raises :class:`NotScorable` with the reason; returns the zones not covered otherwise. A
    single slice (a 2-D image) is left to the caller: it is scored as a slice, not a volume.
    """
    nz = lungs.shape[0]
    area = np.count_nonzero(lungs.reshape(nz, -1), axis=1)
    present = np.flatnonzero(area)
    if nz == 1 or present.size == 0:
        return Coverage()
    n_slices = int(present[-1] - present[0] + 1)
    height_mm = n_slices * spacing[0]
    largest = area.max()
    apex_cut = present[-1] == nz - 1 and area[-1] > CUT_AREA_SHARE * largest
    base_cut = present[0] == 0 and area[0] > CUT_AREA_SHARE * largest
    # a lung is widest low down, above the diaphragm's dome: a scan whose lungs are widest in
    # their top slices ends below that level and shows the bases only
    widest = int(np.argmax(area))
    top_wide = area[present[-1]] >= BASES_TOP_AREA * largest
    bases_only = top_wide or widest >= present[-1] - BASES_TOP_SHARE * (n_slices - 1)
    # checked first: an abdominal CT shows little lung, and saying so is the better reason
    if apex_cut and not base_cut and bases_only:
        raise NotScorable(
            source,
            "not a chest CT: the scan shows the lung bases only (the lungs are at their widest "
            "in the scan's top slices; an abdominal CT?)",
        )
    if n_slices < MIN_LUNG_SLICES or height_mm < MIN_LUNG_MM:
        raise NotScorable(
            source,
            f"too little lung along the body's axis ({height_mm:.0f} mm in "
            f"{n_slices} slice(s); at least {MIN_LUNG_MM:.0f} mm and {MIN_LUNG_SLICES} slices "
            "are needed)",
        )
    if cut_share > MAX_CUT_SHARE:
        raise NotScorable(
            source,
            f"the lungs are cut by the field of view (they reach the "
            f"image's edge in {100 * cut_share:.0f} % of their slices; a cropped or small "
            "reconstruction?)",
        )
    uncovered, notes = set(), []
    if apex_cut:
        uncovered.add("upper")
        notes.append("the lung apices lie above the scan: upper zones not scored")
    if base_cut:
        uncovered.add("lower")
        notes.append("the lung bases lie below the scan: lower zones not scored")
    if cut_share > 0:
        notes.append(
            f"the lungs reach the image's edge in {100 * cut_share:.0f} % of their slices: "
            "volumes may be slightly low"
        )
    return Coverage(frozenset(uncovered), tuple(notes))


__all__ = ["Coverage", "NotScorable", "assess_coverage"]
