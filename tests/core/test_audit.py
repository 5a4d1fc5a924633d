"""The hash-chained audit log: appends under concurrency, and tampering is detected."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, text, update
from sqlmodel import Session

from cloudseal.migrate import upgrade
from core import audit
from core.db import make_engine, session_scope
from core.models import AuditEvent


def _append(engine, n: int, actor: str = "operator:alice") -> None:
    for i in range(n):
        with session_scope(engine) as session:
            audit.record(session, actor=actor, action="test.event", object_type="thing", object_id=str(i),
                         details={"i": i, "note": "ünïcode ok"})


def _verify(engine) -> audit.ChainReport:
    with Session(engine) as session:
        return audit.verify_chain(session)


def test_chain_verifies_after_appends(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    _append(engine, 10)
    report = _verify(engine)
    assert report.ok and report.entries == 10
    engine.dispose()


def test_concurrent_appends_keep_one_gapless_chain(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda w: _append(engine, 15, actor=f"worker:{w}"), range(8)))
    report = _verify(engine)
    assert report.ok, report.problems
    assert report.entries == 120
    engine.dispose()


def test_an_edited_row_is_detected(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    _append(engine, 5)
    with session_scope(engine) as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(actor="operator:mallory"))
    report = _verify(engine)
    assert not report.ok and any("entry 3 was altered" in p for p in report.problems)
    engine.dispose()


def test_a_deleted_row_is_detected(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    _append(engine, 5)
    with session_scope(engine) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    assert any("missing" in p for p in _verify(engine).problems)
    engine.dispose()


def test_deleting_the_newest_rows_is_detected(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    _append(engine, 5)
    with session_scope(engine) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4))
    assert any("head names entry 5" in p for p in _verify(engine).problems)
    engine.dispose()


def test_audit_entry_is_rolled_back_with_its_transaction(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            audit.record(session, actor="a", action="x", object_type="t", object_id="1")
            raise RuntimeError("the business change failed")
    except RuntimeError:
        pass
    _append(engine, 1)
    report = _verify(engine)
    assert report.ok and report.entries == 1
    engine.dispose()


def test_cli_audit_verify_passes_then_fails_after_tampering(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    upgrade(url)
    engine = make_engine(url)
    _append(engine, 3)
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": url}
    cli = [sys.executable, "-m", "cloudseal", "audit", "verify"]
    ok = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "3 entries" in ok.stderr
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET outcome = 'failure' WHERE seq = 2"))
    broken = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "entry 2 was altered" in broken.stderr
    engine.dispose()
