"""Tables of the mobile API: app sessions (refresh tokens), prepared submissions, the inbox."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime

# BIGINT on PostgreSQL (rows accumulate for ever); SQLite autoincrements INTEGER only.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class MobileRefreshToken(SQLModel, table=True):
    """One opaque refresh token of an app session, stored only as its SHA-256.

    Tokens rotate: each is used once and replaced by the next one of the same ``family_id``
    (one family per login). Presenting a used token revokes the whole family, and an
    access token is honoured only while no token of its family is revoked or expired.
    """

    __tablename__ = "mobile_refresh_token"

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG_ID)
    investor_id: int = Field(foreign_key="ra_investor.id", index=True)
    credential_id: str = Field(max_length=64, index=True)
    device_sha256: str = Field(max_length=64, description="the device key the session is bound to")
    family_id: str = Field(max_length=32, index=True)
    token_hash: str = Field(max_length=64, unique=True, description="SHA-256, lower-case hex")
    issued_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revoked_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class MobileSubmission(SQLModel, table=True):
    """A ballot or revocation the server prepared for the investor's signature.

    Bound to its exact bytes (``payload_sha256``) and to one device challenge; usable once
    (``used_at``) before ``expires_at``. Once accepted it keeps the sealed receipt.
    """

    __tablename__ = "mobile_submission"

    id: str = Field(primary_key=True, max_length=32, description="public id (hex)")
    investor_id: int = Field(foreign_key="ra_investor.id", index=True)
    credential_id: str = Field(max_length=64)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    holder_no: str = Field(max_length=32)
    kind: str = Field(max_length=16, description="ballot or revocation")
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="canonical JSON")
    payload_sha256: str = Field(max_length=64, index=True)
    challenge_id: str = Field(max_length=64)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    cms_sha256: str | None = Field(default=None, max_length=64)
    receipt: str | None = Field(default=None, sa_column=Column(Text),
                                description="JSON: the sealed receipt, once accepted")


class MobileNotification(SQLModel, table=True):
    """One entry of an investor's inbox; ``seq`` numbers an investor's entries 1, 2, 3 …
    in the order they were committed (the app polls with the last one it saw)."""

    __tablename__ = "mobile_notification"
    __table_args__ = (UniqueConstraint("investor_id", "seq", name="uq_mobile_notification_seq"),
                      UniqueConstraint("investor_id", "dedupe_key", name="uq_mobile_notification_key"))

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG_ID)
    investor_id: int = Field(foreign_key="ra_investor.id")
    seq: int
    kind: str = Field(max_length=32, description="new_meeting, deadline, receipt, result, certificate")
    dedupe_key: str = Field(max_length=128, description="what it is about: each event enters once")
    meeting_public_id: str | None = Field(default=None, max_length=32)
    data: str = Field(sa_column=Column(Text, nullable=False), description="JSON, language-neutral")
    occurred_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class MobileInboxState(SQLModel, table=True):
    """The last inbox ``seq`` of an investor; writers lock this row, which orders the entries."""

    __tablename__ = "mobile_inbox_state"

    investor_id: int = Field(primary_key=True, foreign_key="ra_investor.id")
    last_seq: int = 0
