"""Tables of the voting service: issuers, meetings, agendas, registers, ballots, the ballot log.

Shares are arbitrary-precision integers end to end: :class:`ShareCount` stores them as their
decimal digits, so no database type can truncate or round them; sums are made in Python.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class ShareCount(TypeDecorator[int]):
    """A non-negative integer of any size, stored as decimal digits (up to 40)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("a share count is a non-negative integer")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


class Issuer(SQLModel, table=True):
    """A listed company: the tenant of its meeting hosts."""

    __tablename__ = "vote_issuer"

    code: str = Field(primary_key=True, max_length=16, description="the company code, e.g. 2330")
    name: str = Field(max_length=200)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Meeting(SQLModel, table=True):
    """A shareholders' meeting and its e-voting window (derived from the dates, Art. 177-2)."""

    __tablename__ = "vote_meeting"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True, description="named in every ballot")
    issuer_code: str = Field(foreign_key="vote_issuer.code", max_length=16, index=True)
    title: str = Field(max_length=200)
    meeting_date: dt.date
    book_closure_date: dt.date
    notice_published_on: dt.date
    opens_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    closes_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False),
                                   description="exclusive: the last moment is one second before")
    public_company: bool = True
    thresholds: str | None = Field(default=None, sa_column=Column(Text),
                                   description="JSON: stricter thresholds from the articles of incorporation")
    status: str = Field(default="draft", max_length=16, description="draft, published, frozen")
    register_sha256: str | None = Field(default=None, max_length=64)
    register_holders: int = 0
    created_by: str = Field(max_length=200)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    frozen_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class AgendaItemRow(SQLModel, table=True):
    """One item of a meeting's agenda; extempore motions and amendments are added at the meeting."""

    __tablename__ = "vote_agenda_item"
    __table_args__ = (UniqueConstraint("meeting_id", "item_key", name="uq_vote_agenda_item"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    item_key: str = Field(max_length=16, description="the id ballots use, e.g. 1, 2, E1")
    position: int
    kind: str = Field(max_length=16)
    title: str = Field(max_length=500)
    article: str | None = Field(default=None, max_length=32)
    seats: int = 0
    candidates: str = Field(default="[]", sa_column=Column(Text, nullable=False),
                            description="JSON list of {key, name}, in the order of the notice")
    added_by: str = Field(max_length=200)
    added_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Holder(SQLModel, table=True):
    """A line of the shareholder register at book closure.

    ``id_hmac`` is the RA's keyed hash of the holder's identity number, so a holder is
    matched to an investor (and their certificate) whatever broker they use.
    """

    __tablename__ = "vote_holder"
    __table_args__ = (UniqueConstraint("meeting_id", "holder_no", name="uq_vote_holder"),
                      Index("ix_vote_holder_identity", "id_hmac", "meeting_id"))

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id")
    holder_no: str = Field(max_length=32)
    id_hmac: str = Field(max_length=64)
    name: str = Field(max_length=200)
    shares: int = Field(sa_column=Column(ShareCount(), nullable=False))
    non_voting_shares: int = Field(sa_column=Column(ShareCount(), nullable=False))
    non_voting_reason: str | None = Field(default=None, max_length=64)
    nominee: bool = False


class Recusal(SQLModel, table=True):
    """A holder with a personal interest in an item (Art. 178): out of that item's votes."""

    __tablename__ = "vote_recusal"
    __table_args__ = (UniqueConstraint("item_id", "holder_id", name="uq_vote_recusal"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="vote_agenda_item.id", index=True)
    holder_id: int = Field(foreign_key="vote_holder.id")
    reason: str = Field(max_length=200)
    entered_by: str = Field(max_length=200)


class BallotRow(SQLModel, table=True):
    """A signed ballot as received, counted or not.

    The partial unique index lets each holder have at most one counted ballot per meeting:
    the first-received rule holds in the database whatever the number of workers.
    """

    __tablename__ = "vote_ballot"
    __table_args__ = (
        UniqueConstraint("meeting_id", "ballot_sha256", name="uq_vote_ballot_hash"),
        Index("uq_vote_counted_ballot", "meeting_id", "holder_id", unique=True,
              sqlite_where=text("status = 'counted'"), postgresql_where=text("status = 'counted'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    holder_id: int = Field(foreign_key="vote_holder.id", index=True)
    ballot_sha256: str = Field(max_length=64)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="canonical JSON (RFC 8785)")
    cms: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="detached CAdES-BES")
    signer_serial: str = Field(max_length=42)
    investor_reference: str = Field(max_length=32)
    received_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(max_length=24, description="counted, superseded, revoked, overridden_by_proxy")
    item_status: str = Field(default="{}", sa_column=Column(Text, nullable=False),
                             description="JSON: items voided on this ballot (over-allocated elections)")
    leaf_index: int
    revocation_evidence: bytes | None = Field(default=None, sa_column=Column(LargeBinary),
                                              description="OCSP response for the signer at receipt (DER)")


class BallotRevocation(SQLModel, table=True):
    """A holder's revocation of their e-vote, as received (late ones are refused, not stored).

    One row per ballot it revoked; the rows of one revocation share its log leaf and receipt
    (both empty on revocations received before revision 0009, which were not logged).
    """

    __tablename__ = "vote_revocation"

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    holder_id: int = Field(foreign_key="vote_holder.id", index=True)
    ballot_id: int = Field(foreign_key="vote_ballot.id")
    received_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    payload_sha256: str = Field(max_length=64, index=True, sa_column_kwargs={"server_default": ""},
                                description="a replayed revocation is refused")
    cms: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_index: int | None = Field(default=None, description="the revocation's entry in the meeting's log")
    receipt: str | None = Field(default=None, sa_column=Column(Text),
                                description="JSON: the sealed receipt given to the holder")
    revocation_evidence: bytes | None = Field(default=None, sa_column=Column(LargeBinary),
                                              description="OCSP response for the signer at receipt (DER)")


class Attendance(SQLModel, table=True):
    """A holder present in the room or by proxy, entered by the host, with their in-room votes."""

    __tablename__ = "vote_attendance"
    __table_args__ = (UniqueConstraint("meeting_id", "holder_id", name="uq_vote_attendance"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    holder_id: int = Field(foreign_key="vote_holder.id")
    mode: str = Field(max_length=16, description="in_person or proxy")
    proxy_name: str | None = Field(default=None, max_length=200)
    choices: str = Field(default="{}", sa_column=Column(Text, nullable=False), description="JSON, as on a ballot")
    entered_by: str = Field(max_length=200)
    entered_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class LogLeaf(SQLModel, table=True):
    """One entry of a meeting's append-only ballot log (RFC 9162 leaf hash of the ballot record)."""

    __tablename__ = "vote_log_leaf"
    __table_args__ = (UniqueConstraint("meeting_id", "leaf_index", name="uq_vote_log_leaf"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id")
    leaf_index: int
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogNode(SQLModel, table=True):
    """The root of one perfect aligned subtree of a meeting's log, kept once it is complete.

    Levels 1 and up only: level 0 (the leaves) is :class:`LogLeaf`. Node ``(level, node_index)``
    covers leaves ``[node_index * 2**level, (node_index + 1) * 2**level)``; any proof or past
    root is folded from O(log n) of these (``voting.merkle.subtrees_of``). Never updated.
    """

    __tablename__ = "vote_log_node"

    meeting_id: int = Field(primary_key=True, foreign_key="vote_meeting.id")
    level: int = Field(primary_key=True, description="1 and up: the subtree has 2**level leaves")
    node_index: int = Field(primary_key=True)
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogState(SQLModel, table=True):
    """The log's size and the roots of its perfect subtrees (appends in O(log n)).

    Appenders lock this row first, which also orders the leaves.
    """

    __tablename__ = "vote_log_state"

    meeting_id: int = Field(primary_key=True, foreign_key="vote_meeting.id")
    size: int = 0
    frontier: str = Field(default="[]", sa_column=Column(Text, nullable=False), description="JSON hex roots")


class TreeHead(SQLModel, table=True):
    """A signed tree head: size and root of a meeting's ballot log, sealed by the platform."""

    __tablename__ = "vote_tree_head"
    __table_args__ = (UniqueConstraint("meeting_id", "tree_size", name="uq_vote_tree_head"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="vote_meeting.id", index=True)
    tree_size: int
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    issued_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="platform seal, ECDSA")


class RunningTally(SQLModel, table=True):
    """The e-voters' tally figures, kept as ballots arrive, and turnout by hour: the live tally
    reads this row and the few room entries instead of every ballot. Written under the
    meeting's lock by whatever changes which ballot counts; the frozen tally is kept here too."""

    __tablename__ = "vote_running_tally"

    meeting_id: int = Field(primary_key=True, foreign_key="vote_meeting.id")
    outstanding_shares: int = Field(sa_column=Column(ShareCount(), nullable=False),
                                    description="votable shares on the register (fixed once published)")
    counts: str = Field(sa_column=Column(Text, nullable=False), description="JSON voting.tally.TallyCounts")
    turnout: str = Field(default="{}", sa_column=Column(Text, nullable=False),
                         description="JSON: Taipei hour -> [holders, shares] of counted e-votes received then")
    frozen_tally: str | None = Field(default=None, sa_column=Column(Text), description="JSON, set when frozen")
    updated_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class MeetingReport(SQLModel, table=True):
    """The signed PDF report of a frozen meeting (PAdES, sealed by the platform)."""

    __tablename__ = "vote_report"

    meeting_id: int = Field(primary_key=True, foreign_key="vote_meeting.id")
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    pdf_sha256: str = Field(max_length=64)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
