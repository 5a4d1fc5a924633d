"""Database engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from core.errors import CommittedRefusal


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC, truncated to whole microseconds."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as
    naive UTC and made aware again on the way out. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _WriteGate:
    """Queues one process's SQLite writers on a lock instead of SQLite's busy handler.

    Every write transaction begins IMMEDIATE (so a reader never has to upgrade and fail with
    "database is locked"). Between processes SQLite's busy handler arbitrates, sleeping in
    steps of up to 100 ms; between threads of one process the gate hands the turn over at
    once, which measured several times the throughput with far lower tail latency. An RLock:
    one thread opening a second write transaction behaves exactly as without the gate.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def begin(self, conn: Any) -> None:
        self._lock.acquire()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        conn.info[_GATE_KEY] = conn.info.get(_GATE_KEY, 0) + 1

    def end(self, conn: Any) -> None:
        for _ in range(conn.info.pop(_GATE_KEY, 0)):
            self._lock.release()

    def on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # A connection returned mid-transaction (its rollback ran without the event).
        for _ in range(record.info.pop(_GATE_KEY, 0)):
            with contextlib.suppress(RuntimeError):  # released from a thread that does not own it
                self._lock.release()


_GATE_KEY = "cloudseal_write_gate"


def make_engine(url: str, *, echo: bool = False, read_only: bool = False) -> Engine:
    """Create an engine for ``url`` with the platform's connection settings.

    SQLite runs in WAL mode with ``synchronous=FULL`` and foreign keys on; every transaction
    begins IMMEDIATE so concurrent writers serialise cleanly; a ``read_only`` engine skips
    that (it serves lock-free WAL reads, e.g. the OCSP fast path). PostgreSQL uses psycopg 3.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,  # bound values (keys' labels, hashes, names) stay out of logs
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            # Enough to keep one connection per server thread (the threadpool has 40), so none
            # is opened and closed per request.
            pool_size=40,
            max_overflow=20,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if not read_only:
            gate = _WriteGate()
            event.listen(engine, "begin", gate.begin)
            event.listen(engine, "commit", gate.end)
            event.listen(engine, "rollback", gate.end)
            event.listen(engine.pool, "checkin", gate.on_checkin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True,
                             hide_parameters=True)
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def committing_refusals(session: Session) -> Iterator[None]:
    """Commit what a :class:`core.errors.CommittedRefusal` recorded, then let it go on."""
    try:
        yield
    except CommittedRefusal:
        session.commit()
        raise
