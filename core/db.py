"""Database engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import time
import weakref
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
    """Queues SQLite writers on locks instead of SQLite's busy handler.

    Every write transaction begins IMMEDIATE (so a reader never has to upgrade and fail with
    "database is locked"). SQLite's own busy handler retries a locked database by sleeping
    1, 2, 5 … up to 100 ms, far longer than a write transaction here holds the lock. So the
    threads of one process queue on a lock (the turn passes at once), and the processes
    sharing the file (server workers, the CLI) on an advisory ``flock`` of a file beside it,
    polled at most a millisecond apart.

    The gate belongs to the connection's transaction, not to a thread: a request may begin
    in one thread-pool thread and commit in another. A thread that already took the gate
    and opens a second write transaction does not wait on itself; that one goes straight to
    SQLite, exactly as without the gate.
    """

    def __init__(self, lock_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread that took the gate, while held
        self._lock_path = lock_path
        self._fd: int | None = None

    def _lock_fd(self) -> int:
        """The lock file beside the database, opened once."""
        if self._fd is None:
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)  # type: ignore[arg-type]
        return self._fd

    def _file_lock(self) -> None:
        if self._lock_path is None:
            return
        fd = self._lock_fd()
        pause, deadline = 0.00005, time.monotonic() + _FILE_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self._lock_path} stayed locked for {_FILE_LOCK_TIMEOUT:.0f} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _take(self) -> bool:
        """Take the gate for a new transaction; False when this thread already holds it."""
        me = threading.get_ident()
        if self._owner == me:
            return False
        if not self._lock.acquire(timeout=_FILE_LOCK_TIMEOUT):
            raise TimeoutError(f"no SQLite write turn within {_FILE_LOCK_TIMEOUT:.0f} s")
        try:
            self._file_lock()
        except BaseException:
            self._lock.release()
            raise
        self._owner = me
        return True

    def try_take(self) -> bool:
        """Take the gate now if nobody holds it (neither a thread nor another process), for
        the write transactions this thread opens until :meth:`give_back`; else False at once.

        A caller that can do other work meanwhile (the ballot intake on its event loop) tries
        again later instead of sleeping while another process writes."""
        if self._owner == threading.get_ident() or not self._lock.acquire(blocking=False):
            return False
        if self._lock_path is not None:
            try:
                fcntl.flock(self._lock_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:  # BlockingIOError: another process writes
                self._lock.release()
                return False
        self._owner = threading.get_ident()
        return True

    def give_back(self) -> None:
        """Give back the gate taken with :meth:`try_take`."""
        self._give_back()

    def _give_back(self) -> None:
        self._owner = None
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()

    def close(self, _engine: Any = None) -> None:
        """Close the lock file (when the engine is disposed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def begin(self, conn: Any) -> None:
        took = self._take()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if took:
                self._give_back()
            raise
        if took:
            conn.info[_GATE_KEY] = True

    def end(self, conn: Any) -> None:
        if conn.info.pop(_GATE_KEY, False):
            self._give_back()

    def commit(self, conn: Any) -> None:
        """Commit, then give the gate back. SQLAlchemy announces a commit *before* it runs
        it: giving the turn back then would start the next writer's ``BEGIN IMMEDIATE``
        while this COMMIT (and its fsync) still holds SQLite's lock, and SQLite's busy handler
        would make it sleep milliseconds. SQLAlchemy's own COMMIT that follows finds no
        transaction and does nothing; if this one fails, that one raises it, and the
        rollback that follows gives the gate back."""
        self._finish(conn, "commit")

    def rollback(self, conn: Any) -> None:
        """Roll back, then give the gate back (see :meth:`commit`)."""
        self._finish(conn, "rollback")

    def _finish(self, conn: Any, how: str) -> None:
        if not conn.info.get(_GATE_KEY):
            return
        dbapi_connection = conn.connection.dbapi_connection
        try:
            getattr(dbapi_connection, how)()
        except Exception:  # noqa: BLE001 - SQLAlchemy's own call repeats and raises it
            return
        self.end(conn)

    def on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # A connection returned mid-transaction (its rollback ran without the event).
        if record.info.pop(_GATE_KEY, False):
            self._give_back()


_GATE_KEY = "cloudseal_write_gate"
_GATES: weakref.WeakKeyDictionary[Engine, _WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: Engine) -> _WriteGate | None:
    """The write gate of a SQLite engine made by :func:`make_engine` (None for PostgreSQL)."""
    return _GATES.get(engine)
_FILE_LOCK_TIMEOUT = 30.0


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
            on_disk = parsed.database and parsed.database != ":memory:"
            gate = _WriteGate(Path(f"{parsed.database}.writelock") if on_disk else None)
            event.listen(engine, "begin", gate.begin)
            event.listen(engine, "commit", gate.commit)
            event.listen(engine, "rollback", gate.rollback)
            event.listen(engine.pool, "checkin", gate.on_checkin)
            event.listen(engine, "engine_disposed", gate.close)
            _GATES[engine] = gate
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
