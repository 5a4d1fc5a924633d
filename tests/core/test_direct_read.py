"""DirectSelect returns what SQLAlchemy's own execution returns, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Boolean, Column, Engine, Integer, MetaData, String, Table, bindparam, event, select, text
from sqlalchemy.exc import DBAPIError

from core.db import UTCDateTime, make_engine
from core.direct_read import DirectSelect

METADATA = MetaData()
PEOPLE = Table("direct_probe_person", METADATA, Column("id", Integer, primary_key=True),
               Column("name", String(20), nullable=False), Column("active", Boolean, nullable=False),
               Column("seen_at", UTCDateTime(), nullable=True))
PETS = Table("direct_probe_pet", METADATA, Column("id", Integer, primary_key=True),
             Column("owner_id", Integer, nullable=False), Column("pet", String(20), nullable=False))
SEEN = dt.datetime(2026, 6, 1, 15, 59, 59, 123456, tzinfo=dt.timezone.utc)

# The same name bound twice, a label, an outer join that may find nothing, a LIMIT, an order.
BY_NAME = (select(PEOPLE.c.id, PEOPLE.c.name, PEOPLE.c.active, PEOPLE.c.seen_at, PETS.c.pet.label("pet_name"))
           .outerjoin(PETS, (PETS.c.owner_id == PEOPLE.c.id) & (PETS.c.pet != bindparam("name")))
           .where((PEOPLE.c.name == bindparam("name")) | (PEOPLE.c.id == bindparam("other_id")))
           .order_by(PEOPLE.c.id, PETS.c.pet).limit(10))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(PEOPLE.insert(), [{"id": 1, "name": "ann", "active": True, "seen_at": SEEN},
                                             {"id": 2, "name": "bo", "active": False, "seen_at": None}])
        connection.execute(PETS.insert(), [{"id": 1, "owner_id": 1, "pet": "cat"},
                                           {"id": 2, "owner_id": 1, "pet": "owl"}])
    yield engine
    engine.dispose()


def test_rows_match_sqlalchemys_with_types_processed(engine: Engine) -> None:
    direct = DirectSelect(BY_NAME)
    with engine.connect() as connection:
        for params in ({"name": "ann", "other_id": 2}, {"name": "bo", "other_id": 0},
                       {"name": "nobody", "other_id": 0}):
            expected = [tuple(row) for row in connection.execute(BY_NAME, params)]
            rows = direct.all(connection, params)
            assert [tuple(row) for row in rows] == expected
        rows = direct.all(connection, {"name": "ann", "other_id": 2})
    assert [(r.id, r.pet_name) for r in rows] == [(1, "cat"), (1, "owl"), (2, None)]
    assert rows[0].seen_at == SEEN and rows[0].seen_at.tzinfo is not None  # aware, as UTCDateTime gives it
    assert rows[0].active is True and rows[2].active is False and rows[2].seen_at is None


def test_binds_are_processed_and_the_connection_autobegins(engine: Engine) -> None:
    by_time = DirectSelect(select(PEOPLE.c.id).where(PEOPLE.c.seen_at == bindparam("seen")))
    with engine.connect() as connection:
        assert not connection.in_transaction()
        # UTCDateTime's bind processing stores naive UTC text on SQLite: an aware value finds it.
        assert [tuple(r) for r in by_time.all(connection, {"seen": SEEN})] == [(1,)]
        assert connection.in_transaction()  # ended by the caller, as after SQLAlchemy's execute
        connection.rollback()
        assert not connection.in_transaction()


def test_driver_errors_come_as_dbapi_errors_with_parameters_hidden(engine: Engine) -> None:
    missing = Table("direct_probe_missing", MetaData(), Column("name", String(20)))
    with engine.connect() as connection:
        with pytest.raises(DBAPIError) as raised:
            DirectSelect(select(missing.c.name).where(missing.c.name == bindparam("who"))).all(
                connection, {"who": "SECRET-H001"})
        assert not raised.value.connection_invalidated
        assert "SECRET-H001" not in str(raised.value)  # make_engine hides bound values from messages and logs
        connection.rollback()
        assert [tuple(r) for r in DirectSelect(select(PEOPLE.c.id).order_by(PEOPLE.c.id)).all(connection, {})] == \
            [(1,), (2,)]


def test_with_cursor_listeners_the_statement_goes_through_sqlalchemy(engine: Engine) -> None:
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many:
                 seen.append((statement, context)))
    with engine.connect() as connection:
        rows = DirectSelect(BY_NAME).all(connection, {"name": "ann", "other_id": 0})
    assert [(r.id, r.pet_name) for r in rows] == [(1, "cat"), (1, "owl")]
    selects = [(statement, context) for statement, context in seen if statement.startswith("SELECT")]
    assert len(selects) == 1 and "direct_probe_person" in selects[0][0]
    assert selects[0][1] is not None  # a tracing listener gets SQLAlchemy's execution context


def test_expanding_parameters_are_refused(engine: Engine) -> None:
    statement = select(PEOPLE.c.id).where(PEOPLE.c.id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as connection, pytest.raises(ValueError, match="expanding"):
        DirectSelect(statement).all(connection, {"ids": [1]})


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # a server-side disconnect
def test_a_broken_postgresql_connection_is_invalidated(engine: Engine) -> None:
    direct = DirectSelect(select(PEOPLE.c.id).order_by(PEOPLE.c.id))
    with engine.connect() as victim, engine.connect() as admin:
        pid = victim.execute(text("select pg_backend_pid()")).scalar_one()
        victim.rollback()
        admin.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            direct.all(victim, {})
        assert raised.value.connection_invalidated and victim.invalidated
    with engine.connect() as fresh:
        assert [tuple(r) for r in direct.all(fresh, {})] == [(1,), (2,)]
