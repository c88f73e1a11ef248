"""The demo's phantom scans taken from the cache are the scans measured afresh: the same file,
the same overlay views, the same numbers; an entry that does not read back whole, or was made by
other code, is not used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celltrial.imaging import demo_cache
from celltrial.imaging.demo import _write_and_measure
from celltrial.imaging.demo_cache import (
    cache_dir,
    entry_key,
    keep_demo_scan,
    recall_demo_scan,
)
from celltrial.imaging.records import views_path

FACTOR, SEED = 1.25, 3


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One phantom measured afresh in a study's ct/ folder, kept in a cache folder."""
    root = tmp_path_factory.mktemp("fresh")
    (root / "study" / "ct").mkdir(parents=True)
    record = _write_and_measure(root / "study" / "ct" / "S001_2020-02-10T1000.nii.gz", FACTOR, SEED)
    views = root / "study" / "ct" / "views"
    folder = root / "cache"
    assert keep_demo_scan(record, FACTOR, SEED, views, folder=folder)
    return record, views, folder


def recall(tmp_path, folder, factor=FACTOR, seed=SEED):
    (tmp_path / "ct").mkdir(exist_ok=True)
    path = tmp_path / "ct" / "S001_2020-02-10T1000.nii.gz"
    return recall_demo_scan(path, factor, seed, tmp_path / "ct" / "views", folder=folder), path


def test_a_kept_scan_is_the_scan_measured_afresh(measured, tmp_path):
    record, views, folder = measured
    again, path = recall(tmp_path, folder)
    assert again is not None
    assert again.path == str(path.resolve()) != record.path
    assert (again.checksum, again.series_uid, again.notes) == (
        record.checksum,
        record.series_uid,
        record.notes,
    )
    assert again.result == record.result
    assert json.dumps(again.result) == json.dumps(record.result)  # the same keys in the same order
    assert path.read_bytes() == Path(record.path).read_bytes()
    kept_views = views_path(tmp_path / "ct" / "views", record.checksum)
    assert kept_views.read_bytes() == views_path(views, record.checksum).read_bytes()


def test_another_recipe_or_other_code_is_not_found(measured, tmp_path, monkeypatch):
    _, _, folder = measured
    assert recall(tmp_path, folder, factor=FACTOR + 1e-9)[0] is None
    assert recall(tmp_path, folder, seed=SEED + 1)[0] is None
    key = entry_key(FACTOR, SEED)
    monkeypatch.setattr(demo_cache, "code_fingerprint", lambda: "other code")
    assert entry_key(FACTOR, SEED) != key
    assert recall(tmp_path, folder)[0] is None


def test_a_damaged_entry_is_not_used(measured, tmp_path):
    _, _, folder = measured
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    key = entry_key(FACTOR, SEED)
    for name in (f"{key}.json", f"{key}.nii.gz", f"{key}.views.npz"):
        (damaged / name).write_bytes((folder / name).read_bytes())
    scan = damaged / f"{key}.nii.gz"
    scan.write_bytes(scan.read_bytes()[:-10])  # cut short
    assert recall(tmp_path, damaged) == (None, tmp_path / "ct" / "S001_2020-02-10T1000.nii.gz")
    assert not (tmp_path / "ct" / "S001_2020-02-10T1000.nii.gz").exists()  # nothing written
    (damaged / f"{key}.json").write_text("{", encoding="utf-8")
    assert recall(tmp_path, damaged)[0] is None


def test_an_unwritable_cache_is_not_used(measured, tmp_path):
    record, views, _ = measured
    blocked = tmp_path / "file"
    blocked.write_text("not a folder", encoding="utf-8")
    assert not keep_demo_scan(record, FACTOR, SEED, views, folder=blocked / "cache")
    assert recall(tmp_path, blocked / "cache")[0] is None


def test_where_the_cache_is(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLTRIAL_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.setenv("CELLTRIAL_CACHE_DIR", "off")
    assert cache_dir() is None
    monkeypatch.delenv("CELLTRIAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if demo_cache.sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "celltrial"


def test_a_scan_from_the_cache_draws_no_phantom(measured, tmp_path):
    """A demo whose phantoms are all in the cache does not import what draws them (SciPy's
    ndimage, about 0.2 CPU s on the demo's longest path)."""
    _, _, folder = measured
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from celltrial.imaging.demo import add_demo_scans, plan_demo_scans\n"
        "from celltrial.imaging.demo_cache import recall_demo_scan\n"
        "from celltrial.imaging.records import store_ct_results\n"
        f"here = Path({str(tmp_path)!r})\n"
        "(here / 'ct').mkdir()\n"
        "path = here / 'ct' / 'S001_2020-02-10T1000.nii.gz'\n"
        f"record = recall_demo_scan(path, {FACTOR!r}, {SEED!r}, here / 'ct' / 'views', "
        f"folder=Path({str(folder)!r}))\n"
        "assert record is not None and path.exists()\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.ndimage')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
