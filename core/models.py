"""Tables owned by the core context: the hash-chained audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class AuditEvent(SQLModel, table=True):
    """One append-only audit record; ``entry_hash`` chains it to its predecessor."""

    __tablename__ = "audit_event"

    seq: int = Field(sa_type=BigInteger, primary_key=True, description="1, 2, 3, … without gaps")
    occurred_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=200)
    tenant: str | None = Field(default=None, max_length=200)
    action: str = Field(max_length=100, index=True)
    object_type: str = Field(max_length=100)
    object_id: str = Field(max_length=200)
    outcome: str = Field(max_length=50)
    details: str = Field(sa_column=Column(Text, nullable=False), description="canonical JSON")
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class AuditHead(SQLModel, table=True):
    """The single row that names the newest audit entry.

    Appenders lock this row first, so entries are chained in one order under any number of
    workers, and deleting the newest entries is detected because the head still names them.
    """

    __tablename__ = "audit_head"

    id: int = Field(primary_key=True)
    last_seq: int = Field(default=0, sa_type=BigInteger)
    last_hash: str = Field(max_length=64)
