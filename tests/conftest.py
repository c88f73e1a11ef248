"""Shared fixtures: the reference protocol as editable data, and small hand-made frames."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import yaml

from celltrial.protocol import Protocol
from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text

ZONE = "Asia/Shanghai"


@pytest.fixture(scope="session")
def reference_data() -> dict[str, Any]:
    """The built-in protocol as a plain dict (copy before editing)."""
    return yaml.safe_load(builtin_protocol_text(DEFAULT_PROTOCOL))


@pytest.fixture
def make_protocol(reference_data: dict[str, Any]) -> Callable[..., Protocol]:
    """Build a validated protocol from the reference one with some parts replaced."""

    def make(**changes: Any) -> Protocol:
        data = copy.deepcopy(reference_data)
        for dotted, value in changes.items():
            target = data
            *parents, last = dotted.split("__")
            for key in parents:
                target = target[key]
            target[last] = value
        return Protocol.model_validate(data)

    return make


def local(day: int, hour: float = 10.0, *, day0: str = "2020-02-10") -> pd.Timestamp:
    """An aware UTC instant at ``hour`` local (Shanghai) time on study ``day``."""
    base = pd.Timestamp(day0).tz_localize(ZONE) + pd.Timedelta(days=day, hours=hour)
    return base.tz_convert("UTC")


def subjects_frame(*codes: str, died: dict[str, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Subjects whose first infusion is day 0 at 10:00 local on 2020-02-10."""
    died = died or {}
    return pd.DataFrame(
        {
            "subject_id": list(codes),
            "sex": ["M"] * len(codes),
            "age": [60.0] * len(codes),
            "weight_kg": [70.0] * len(codes),
            "baseline_who_scale": [6] * len(codes),
            "first_infusion": [local(0)] * len(codes),
            "discharged": pd.to_datetime([pd.NaT] * len(codes), utc=True),
            "died": pd.to_datetime([died.get(c, pd.NaT) for c in codes], utc=True),
            "withdrawn": pd.to_datetime([pd.NaT] * len(codes), utc=True),
        }
    )


def observations_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Observations from (subject, test, study_day) triples (value 1.0)."""
    return pd.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "test": [r[1] for r in rows],
            "study_day": pd.array([r[2] for r in rows], dtype="Int64"),
            "time": [local(r[2], 6) for r in rows],
            "value": [1.0] * len(rows),
        }
    )


EMPTY_STATUS = pd.DataFrame(columns=["subject_id", "time", "study_day", "who_scale"])
EMPTY_IMAGING = pd.DataFrame(columns=["subject_id", "time", "study_day"])
