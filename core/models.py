"""Tables owned by the core context: the hash-chained audit log, staff accounts, API clients."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class AuditEvent(SQLModel, table=True):
    """One append-only audit record; ``entry_hash`` chains it to its predecessor."""

    __tablename__ = "audit_event"
    # What happened to one object (e.g. an investor's credentials, read by the app's inbox).
    __table_args__ = (Index("ix_audit_event_object", "object_type", "object_id"),)

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


class StaffUser(SQLModel, table=True):
    """A person who signs in with a password: operator, RA officer, back office, host, auditor.

    ``tenant`` is the broker code (ra_officer, broker_backoffice) or the issuer code
    (issuer_host); operators and auditors have none. ``failed_logins`` counts consecutive
    wrong passwords and is only ever changed by atomic UPDATEs, so it holds under many workers.
    """

    __tablename__ = "staff_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=255, description="argon2id, PHC string format")
    role: str = Field(max_length=32)
    tenant: str | None = Field(default=None, max_length=32, index=True)
    active: bool = Field(default=True)
    failed_logins: int = Field(default=0, sa_type=BigInteger)
    locked_until: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class RefreshToken(SQLModel, table=True):
    """One opaque refresh token, stored only as its SHA-256.

    Tokens rotate: each is used once and replaced by the next one of the same ``family_id``
    (one family per login). Presenting a used or revoked token revokes the whole family.
    """

    __tablename__ = "staff_refresh_token"

    # BIGINT on PostgreSQL (one row per refresh, for ever); SQLite autoincrements INTEGER only.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    user_id: int = Field(foreign_key="staff_user.id", index=True)
    family_id: str = Field(max_length=32, index=True)
    token_hash: str = Field(max_length=64, unique=True, description="SHA-256, lower-case hex")
    issued_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class ApiClient(SQLModel, table=True):
    """A broker's machine client (client-credentials flow); the secret is stored as SHA-256.

    ``tenant`` is a broker code kept as a plain string: the RA context owns brokers and
    validates the code when it creates clients for them.
    """

    __tablename__ = "api_client"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=64, unique=True)
    secret_hash: str = Field(max_length=64, description="SHA-256, lower-case hex")
    tenant: str = Field(max_length=32, index=True)
    role: str = Field(default="broker_backoffice", max_length=32)
    name: str = Field(max_length=200)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
