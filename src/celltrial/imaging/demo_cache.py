"""The demo's phantom CT scans kept between runs, so `celltrial demo` does not segment the same
deterministic phantoms again (18 scans: 3.5 s of CPU, the demo's largest part after the report).

A phantom is a pure function of its recipe (lesion factor and seed) and the code that draws it,
and its quantification a pure function of the file and the code that measures it. An entry is
therefore keyed by the recipe, a hash of every file of :mod:`celltrial.imaging` (code, bands,
model weights), celltrial's version and the versions of the numerical libraries it runs on; any
change to one of them is a new key, so a result is never reused by code that would compute
another. An entry holds the phantom file, its overlay views and its numbers; it is used only
when the file and views read back have the checksums the entry recorded (else the scan is
measured again and the entry replaced). Entries are written whole (a temporary file renamed).

Where: ``$CELLTRIAL_CACHE_DIR``, else the user's cache folder (``$XDG_CACHE_HOME/celltrial``,
``~/.cache/celltrial``; ``~/Library/Caches/celltrial`` on macOS; ``%LOCALAPPDATA%\\celltrial``
on Windows). ``CELLTRIAL_CACHE_DIR=off`` turns the cache off. A cache that cannot be written is
not used (the demo measures its scans as without it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

from celltrial.imaging.records import ScanRecord, views_path

CACHE_ENV = "CELLTRIAL_CACHE_DIR"
#: Libraries whose versions are part of every key (the measurement runs on them).
LIBRARIES = ("numpy", "scipy", "scikit-image", "nibabel", "SimpleITK", "onnxruntime", "pydicom")
#: Bump to drop every entry of this layout.
LAYOUT = 1


def cache_dir() -> Path | None:
    """The folder of celltrial's cache (None: turned off)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return None if chosen.strip().lower() == "off" else Path(chosen)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "celltrial"


@cache
def code_fingerprint() -> str:
    """SHA-256 of every file of the imaging package (name and bytes), celltrial's version and
    the numerical libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version

    from celltrial import __version__

    digest = hashlib.sha256(f"layout {LAYOUT}; celltrial {__version__}\n".encode())
    for library in LIBRARIES:
        try:
            digest.update(f"{library} {version(library)}\n".encode())
        except PackageNotFoundError:
            digest.update(f"{library} absent\n".encode())
    root = Path(__file__).parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root).as_posix()).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def entry_key(factor: float, seed: int) -> str:
    """The key of the demo phantom drawn with ``factor`` and ``seed`` by this code."""
    recipe = json.dumps({"factor": repr(float(factor)), "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(f"{code_fingerprint()}\n{recipe}".encode()).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recall_demo_scan(
    path: Path, factor: float, seed: int, views_dir: Path, *, folder: Path | None
) -> ScanRecord | None:
    """Write the kept phantom to ``path`` and its views to ``views_dir`` and return its record,
    or None when there is no sound entry (nothing is written then)."""
    if folder is None:
        return None
    key = entry_key(factor, seed)
    try:
        entry = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        scan = (folder / f"{key}.nii.gz").read_bytes()
        views = (folder / f"{key}.views.npz").read_bytes()
    except (OSError, ValueError):
        return None
    if _sha256(scan) != entry.get("checksum") or _sha256(views) != entry.get("views_sha256"):
        return None
    path.write_bytes(scan)
    target = views_path(views_dir, entry["checksum"])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(views)
    return ScanRecord(
        path=str(path.resolve()),
        checksum=entry["checksum"],
        series_uid=entry["series_uid"],
        result=entry["result"],
        notes=tuple(entry["notes"]),
    )


def keep_demo_scan(
    record: ScanRecord, factor: float, seed: int, views_dir: Path, *, folder: Path | None
) -> bool:
    """Keep a measured phantom (its file, views and numbers); False when the cache folder
    cannot be written (the demo goes on without it)."""
    if folder is None or record.checksum is None or record.extra:
        return False
    key = entry_key(factor, seed)
    entry = {
        "checksum": record.checksum,
        "series_uid": record.series_uid,
        "result": record.result,
        "notes": list(record.notes),
    }
    try:
        scan = Path(record.path).read_bytes()
        views = views_path(views_dir, record.checksum).read_bytes()
        if _sha256(scan) != record.checksum:
            return False
        entry["views_sha256"] = _sha256(views)
        folder.mkdir(parents=True, exist_ok=True)
        _write_whole(folder / f"{key}.nii.gz", scan)
        _write_whole(folder / f"{key}.views.npz", views)
        # the numbers last (keys in their order: zones are listed as measured); an entry
        # without them is never read
        _write_whole(folder / f"{key}.json", json.dumps(entry).encode("utf-8"))
    except (OSError, TypeError, ValueError):  # unwritable folder; a value JSON cannot hold
        return False
    return True


def _write_whole(path: Path, data: bytes) -> None:
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


__all__ = ["cache_dir", "code_fingerprint", "entry_key", "keep_demo_scan", "recall_demo_scan"]
