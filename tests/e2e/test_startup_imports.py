"""Commands import only what they need (issue 26): `--help` loads no data library and `status`
none of the analysis, imaging, report or web stacks, so that they answer at once. Each runs in a
fresh process, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from celltrial.study import init_study

PROBE = """
import contextlib, io, json, sys
from celltrial.cli import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app(sys.argv[1:], prog_name="celltrial", standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""
#: Libraries of the analyses, CT, report and web app: no quick command needs them.
HEAVY = {
    "alembic",
    "fastapi",
    "highdicom",
    "jinja2",
    "lifelines",
    "matplotlib",
    "nibabel",
    "onnxruntime",
    "openpyxl",
    "pint",
    "pydicom",
    "scipy",
    "SimpleITK",
    "skimage",
    "starlette",
    "statsmodels",
    "uvicorn",
    "weasyprint",
}


def loaded_modules(*args: str) -> set[str]:
    """Every module the command loaded (full dotted names)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def loaded(*args: str) -> set[str]:
    """The top-level packages the command loaded."""
    return {name.split(".")[0] for name in loaded_modules(*args)}


def test_help_loads_no_data_library():
    names = loaded_modules("--help")
    modules = {name.split(".")[0] for name in names}
    assert "typer" in modules
    assert not modules & (HEAVY | {"pandas", "numpy", "sqlalchemy", "pydantic", "yaml"})
    assert "importlib.metadata" not in names  # the version is read only for --version


def test_status_loads_only_what_it_needs(tmp_path):
    folder = tmp_path / "study"  # a SQLite study, whatever backend the suite runs on
    study = init_study(folder, db_url=f"sqlite:///{folder / 'celltrial.db'}", user="test")
    study.engine.dispose()
    names = loaded_modules("status", str(folder))
    modules = {name.split(".")[0] for name in names}
    assert {"pandas", "sqlalchemy", "pydantic"} <= modules
    assert not modules & HEAVY
    # it reads through SQLAlchemy Core (celltrial.store.tables): the ORM is a third of a second
    assert not {"sqlalchemy.orm", "celltrial.store.models", "celltrial.store.audit"} & names
