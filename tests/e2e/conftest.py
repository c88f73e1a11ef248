"""The default demo study (5 subjects, seed 2020), built once for the end-to-end tests that
read it: a demo is the largest single cost of these tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from celltrial.cli import app


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory) -> Path:
    """The folder of a study made by ``celltrial demo`` with its defaults. Tests only read it,
    except ``test_cli``'s ``--force``, which replaces it with the same demo."""
    out = tmp_path_factory.mktemp("demo") / "study"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
