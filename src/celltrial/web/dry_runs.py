"""Uploads are checked in a worker process, away from the processes that answer requests.

Reading a workbook is pure Python for the most part (openpyxl): checked in a thread of the web
process, a large one held the interpreter lock for a minute and made every page about 20 times
slower. The dry run of an upload (read, validate, nothing stored) therefore runs in a process of
its own, which opens the study once and is kept for the next upload (:class:`DryRunProcess`);
so does the import of a confirmed upload, which reads the file again.
A check that takes longer than :data:`DRY_RUN_SECONDS` is stopped (the process is ended and
another started) and the upload refused with a message; so is one whose process dies.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celltrial.errors import DataError
from celltrial.study import StudyHandle, open_study

if TYPE_CHECKING:
    from celltrial.web.imports import Imported, StagedUpload

_log = logging.getLogger(__name__)

#: The longest a dry run may take (a workbook at the cell limit takes about a minute).
DRY_RUN_SECONDS = 300.0

#: The study, in the worker process (opened by :func:`_open`).
_study: StudyHandle | None = None


def _open(parent: int, directory: str, url: str, user: str) -> None:
    from celltrial.services.monitoring import _end_with_parent

    global _study
    _end_with_parent(parent)
    _study = open_study(directory, db_url=url, user=user)


def _ready() -> None:
    """Nothing: submitted first, so that the process starts before the first upload."""


def _check(folder: str, staged: StagedUpload) -> StagedUpload:
    from celltrial.web.imports import dry_run

    assert _study is not None, "the worker process opens the study first"
    dry_run(_study, Path(folder), staged)
    return staged


def _confirm(token: str, key: str, username: str) -> tuple[Any, ...]:
    """In the worker: import a staged upload; a refusal comes back as its parts (its exception
    does not cross processes as it is)."""
    from celltrial.ingest.importer import ImportRefused
    from celltrial.web.imports import confirm_upload

    assert _study is not None, "the worker process opens the study first"
    try:
        return ("imported", confirm_upload(_study, token, key, username=username))
    except ImportRefused as refused:
        return ("refused", str(refused), refused.report, refused.report_csv)


class DryRunProcess:
    """A worker process that checks uploads of ``study`` (see the module's docstring)."""

    def __init__(self, study: StudyHandle, *, user: str, timeout: float = DRY_RUN_SECONDS):
        self._arguments = (
            os.getpid(),
            str(study.directory),
            study.engine.url.render_as_string(hide_password=False),
            user,
        )
        self.timeout = timeout
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=get_context("spawn"),
                initializer=_open,
                initargs=self._arguments,
            )
            self._pool.submit(_ready)  # the process starts and opens the study now, not on use

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            _end(pool)

    def check(self, folder: Path, staged: StagedUpload) -> StagedUpload:
        """``staged`` with its dry run's report (``fatal`` set when the check was stopped)."""
        self.start()
        assert self._pool is not None
        try:
            return self._pool.submit(_check, str(folder), staged).result(timeout=self.timeout)
        except FutureTimeout:
            self.stop()  # the check cannot be cancelled: its process is ended
            staged.ok = False
            staged.fatal = (
                f"{staged.file_name}: checking the file took longer than "
                f"{self.timeout / 60:.0f} minutes and was stopped; nothing was stored. Split the "
                "file, or import it with `celltrial import`"
            )
        except BrokenProcessPool:
            _log.warning("the process checking %s ended", staged.file_name, exc_info=True)
            self.stop()
            staged.ok = False
            staged.fatal = (
                f"{staged.file_name}: the file could not be checked (the process reading it "
                "ended, e.g. out of memory); nothing was stored"
            )
        return staged

    def confirm(self, token: str, key: str, *, username: str) -> Imported:
        """Import a staged upload in the worker process (it reads the file again): see
        :func:`celltrial.web.imports.confirm_upload`. Not stopped however long it takes (the
        import is one transaction)."""
        from celltrial.ingest.importer import ImportRefused

        self.start()
        assert self._pool is not None
        try:
            outcome = self._pool.submit(_confirm, token, key, username).result()
        except BrokenProcessPool:
            self.stop()
            raise DataError(
                "the import stopped before it ended (the process reading the file ended, e.g. "
                "out of memory); nothing was stored"
            ) from None
        if outcome[0] == "refused":
            raise ImportRefused(*outcome[1:])
        return outcome[1]


def _end(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting for a check that may run for minutes."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
        process.join(timeout=10)
