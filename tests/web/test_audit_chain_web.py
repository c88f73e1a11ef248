"""The dashboard says when the audit trail's chain is broken (an entry rewritten in the database
behind celltrial's back), naming the entry, as `celltrial audit verify` does."""

from __future__ import annotations

import pytest

from celltrial.services import audit_trail
from celltrial.store.audit import check_audit_chain
from tests.store.backends import BACKENDS, fresh_database
from tests.store.test_audit_chain import forge
from tests.web.conftest import build_study, client_for


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_forged_entry_shows_on_the_dashboard(backend, tmp_path):
    from celltrial.web import create_app

    with fresh_database(backend, tmp_path, migrated=True) as url:
        study = build_study(tmp_path / "study", subjects=("S001",), db_url=url)
        app = create_app(tmp_path / "study", db_url=url)
        try:
            monitor = client_for(app, "monitor")
            page = monitor.get("/").text
            assert "Audit trail broken" not in page
            forge(
                study.engine,
                "UPDATE audit_event SET reason = 'nothing happened' WHERE id = "
                "(SELECT MIN(id) FROM audit_event WHERE table_name = 'subject')",
            )
            audit_trail._chain_checks.clear()  # the dashboard re-checks at most once a minute
            page = monitor.get("/").text
            check = check_audit_chain(study.engine)
            assert not check.intact
            assert "Audit trail broken" in page
            assert f"audit event {check.broken_at} " in page
        finally:
            app.state.study.engine.dispose()
            study.engine.dispose()
