"""A fingerprint of frames and plain values, telling whether what a view was made from changed.

A frame's share is computed once per frame object and then looked up: frames are not changed in
place (a state that changes a table holds a new frame, and a subject's rows of an unchanged
frame are the same object, :func:`celltrial.services.monitoring.rows_of_subject`), so after a
write only the rows that are new objects are read value by value again.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from typing import Any

import pandas as pd

#: id(frame) -> (a weak reference to the frame, the digest of its columns and values).
_frame_digests: dict[int, tuple[weakref.ref[pd.DataFrame], bytes]] = {}


def fingerprint(*parts: Any) -> str:
    """A fingerprint of frames (column names and values) and plain values.

    A column's type comes from every subject's rows (one missing grade makes the column float,
    one unknown ``expected`` makes it object), so values are compared as text, numbers as floats
    and missing values alike, whatever the column's type.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            digest.update(b"frame\x1d" + frame_digest(part))
        else:
            digest.update(b"value\x1d" + repr(part).encode())
    return digest.hexdigest()


def frame_digest(frame: pd.DataFrame) -> bytes:
    """The digest of ``frame``'s column names and values, computed once per frame object."""
    key = id(frame)
    kept = _frame_digests.get(key)
    if kept is not None and kept[0]() is frame:
        return kept[1]
    digest = hashlib.sha256(repr(list(frame.columns)).encode())
    for column in frame.columns:
        digest.update("\x1f".join(map(_text, frame[column].tolist())).encode())
        digest.update(b"\x1e")
    value = digest.digest()

    def forget(ref: weakref.ref[pd.DataFrame], key: int = key) -> None:
        if _frame_digests.get(key, (None,))[0] is ref:
            _frame_digests.pop(key, None)

    _frame_digests[key] = (weakref.ref(frame, forget), value)
    return value


def _text(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


__all__ = ["fingerprint", "frame_digest"]
