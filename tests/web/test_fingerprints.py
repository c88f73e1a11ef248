"""The fingerprint that tells whether a subject's figure must be drawn again: blind to column
types other subjects' rows gave, sensitive to any value, and reading each frame object once."""

from __future__ import annotations

import pandas as pd

from celltrial.services import fingerprints
from celltrial.services.fingerprints import fingerprint


def test_a_figure_fingerprint_ignores_column_types_other_subjects_gave():
    own = pd.DataFrame({"grade": [2, 3], "expected": [True, False], "term": ["Rash", "Fever"]})
    widened = own.astype({"grade": "float64", "expected": "object"})
    assert fingerprint(own, 28) == fingerprint(widened, 28)
    assert fingerprint(own.iloc[:0], 28) == fingerprint(widened.iloc[:0], 28)
    changed = own.assign(grade=[2, 4])
    assert fingerprint(own, 28) != fingerprint(changed, 28)
    assert fingerprint(own, 28) != fingerprint(own, 14)
    assert fingerprint(own, own.iloc[:0]) != fingerprint(own.iloc[:0], own)
    assert fingerprint(own) != fingerprint(own.rename(columns={"term": "event"}))


def test_each_frame_object_is_read_once(monkeypatch):
    read: list[object] = []
    text = fingerprints._text
    monkeypatch.setattr(fingerprints, "_text", lambda value: read.append(value) or text(value))
    rows = pd.DataFrame({"test": ["CRP", "IL6"], "value": [12.5, float("nan")]})
    first = fingerprint(rows, 28)
    assert len(read) == 4
    assert fingerprint(rows, 28) == first and len(read) == 4  # looked up, not read again
    copy = rows.copy()  # another object with the same values: read, and alike
    assert fingerprint(copy, 28) == first and len(read) == 8
    keys = {id(rows), id(copy)}
    assert keys <= set(fingerprints._frame_digests)
    del rows, copy  # forgotten with their frames
    assert not keys & set(fingerprints._frame_digests)
