"""Engines, migrations and the drift check between models and migrations."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text
from sqlmodel import Session

from cloudseal.migrate import upgrade
from cloudseal.models import metadata
from core.db import UTCDateTime, make_engine
from core.errors import AppError
from core.models import AuditHead


def schema_drift(url: str, target: MetaData = metadata) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, target)
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ValueError):
        make_engine("mysql://somewhere/db")


def test_migrations_match_the_models(database_url: str) -> None:
    upgrade(database_url)
    assert schema_drift(database_url) == []


def test_drift_check_notices_a_table_without_migration(database_url: str) -> None:
    upgrade(database_url)
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("unmigrated_table", extended, Column("id", Integer, primary_key=True))
    diff = schema_drift(database_url, extended)
    assert any(op[0] == "add_table" and op[1].name == "unmigrated_table" for op in diff)


def test_migrations_are_idempotent_and_seed_the_audit_head(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        head = session.get(AuditHead, 1)
        assert head is not None and head.last_seq == 0
    assert "ca_certificate" in inspect(engine).get_table_names()
    engine.dispose()


def test_timestamps_come_back_aware_utc_and_naive_ones_are_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    table = Table("ts_probe", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    table.create(engine)
    taipei = dt.timezone(dt.timedelta(hours=8))
    with engine.begin() as conn:
        conn.execute(table.insert().values(id=1, at=dt.datetime(2026, 6, 1, 23, 59, 59, tzinfo=taipei)))
    with engine.connect() as conn:
        stored = conn.execute(table.select()).one().at
    assert stored == dt.datetime(2026, 6, 1, 15, 59, 59, tzinfo=dt.timezone.utc)
    assert stored.utcoffset() == dt.timedelta(0)
    with pytest.raises(Exception), engine.begin() as conn:
        conn.execute(table.insert().values(id=2, at=dt.datetime(2026, 6, 1)))
    engine.dispose()


def test_app_errors_carry_status_and_stable_code() -> None:
    err = AppError("nope", code="thing_missing", status_code=404)
    assert err.to_body() == {"error": {"code": "thing_missing", "message": "nope"}}


def _counter_engine(tmp_path) -> tuple[object, str]:
    url = f"sqlite:///{tmp_path}/gate.db"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))
    return engine, url


def test_a_write_transaction_may_commit_in_another_thread(tmp_path) -> None:
    """A request's session can begin in one thread-pool thread and commit in another."""
    engine, _ = _counter_engine(tmp_path)
    session = Session(engine)
    session.execute(text("UPDATE counter SET n = n + 1"))  # BEGIN IMMEDIATE here, in this thread
    with ThreadPoolExecutor(1) as pool:
        pool.submit(session.commit).result(timeout=10)
    session.close()
    with Session(engine) as again:  # the gate was given back: the next writer gets in at once
        again.execute(text("UPDATE counter SET n = n + 1"))
        again.commit()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 2
    engine.dispose()


def test_the_write_turn_passes_only_once_the_commit_or_rollback_has_run(tmp_path) -> None:
    """SQLAlchemy announces a commit before running it; the next writer must not start its
    BEGIN IMMEDIATE while this COMMIT still holds SQLite's lock (it would sleep in SQLite's
    busy handler). A listener after the gate's sees the transaction already ended."""
    from sqlalchemy import event

    engine, _ = _counter_engine(tmp_path)
    seen: list[tuple[str, bool]] = []

    def after_gate(how: str):
        def listener(connection) -> None:
            seen.append((how, connection.connection.dbapi_connection.in_transaction))
        return listener

    event.listen(engine, "commit", after_gate("commit"))
    event.listen(engine, "rollback", after_gate("rollback"))
    with Session(engine) as session:
        session.execute(text("UPDATE counter SET n = n + 1"))
        session.commit()
        session.execute(text("UPDATE counter SET n = n + 100"))
        session.rollback()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 1
    assert seen[:2] == [("commit", False), ("rollback", False)]
    engine.dispose()


def test_a_writer_that_can_wait_elsewhere_tries_for_the_turn_without_blocking(tmp_path) -> None:
    """``try_take`` answers at once: False while another engine (another process) writes,
    True when free; the taker's own transactions then go straight in, and ``give_back`` lets
    the others in again."""
    from core.db import write_gate

    first, url = _counter_engine(tmp_path)
    second = make_engine(url)
    gate = write_gate(first)
    assert gate is not None and write_gate(make_engine(url, read_only=True)) is None
    holder = second.connect()
    holder.begin()
    holder.execute(text("UPDATE counter SET n = n + 1"))
    started = time.monotonic()
    assert gate.try_take() is False and time.monotonic() - started < 0.1
    holder.commit()
    holder.close()
    assert gate.try_take() is True
    pool = ThreadPoolExecutor(1)

    def other_process_writes() -> None:
        with second.begin() as connection:
            connection.execute(text("UPDATE counter SET n = n + 5"))

    try:
        with Session(first) as session:
            session.execute(text("UPDATE counter SET n = n * 10"))
            session.commit()
        waiting = pool.submit(other_process_writes)
        time.sleep(0.2)
        assert not waiting.done()
    finally:
        gate.give_back()
    waiting.result(timeout=10)
    pool.shutdown()
    with first.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 15
    first.dispose()
    second.dispose()


def test_writers_of_two_engines_on_one_file_take_turns(tmp_path) -> None:
    """Processes (here: two engines) sharing the file queue on the lock file beside it."""
    first, url = _counter_engine(tmp_path)
    second = make_engine(url)
    order: list[str] = []
    holder = first.connect()
    holder.begin()
    holder.execute(text("UPDATE counter SET n = n + 1"))

    def other_writer() -> None:
        with second.begin() as connection:
            order.append("second began")
            connection.execute(text("UPDATE counter SET n = n * 10"))

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(other_writer)
        time.sleep(0.3)
        order.append("first commits")
        holder.commit()
        holder.close()
        waiting.result(timeout=10)
    assert order == ["first commits", "second began"]
    assert (tmp_path / "gate.db.writelock").exists()
    with first.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 10
    first.dispose()
    second.dispose()


def test_request_sessions_share_one_session_when_reads_and_writes_use_one_engine(tmp_path) -> None:
    """On PostgreSQL (one engine) a request must not hold a pooled connection for its reads
    while it waits for another for its writes: under load that drained the pool."""
    from types import SimpleNamespace

    from core.web import request_sessions

    engine = make_engine(f"sqlite:///{tmp_path}/one.db")
    reader_engine = make_engine(f"sqlite:///{tmp_path}/one.db", read_only=True)
    one = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine, read_engine=engine)))
    two = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine, read_engine=reader_engine)))
    with request_sessions(one) as (session, reader):  # type: ignore[arg-type]
        assert reader is session
    with request_sessions(two) as (session, reader):  # type: ignore[arg-type]
        assert reader is not session and reader.get_bind() is reader_engine
    engine.dispose()
    reader_engine.dispose()
