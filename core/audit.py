"""The append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so editing, inserting
or deleting any row breaks the chain from that point on; the head row names the newest
entry, so deleting from the end is caught too. :func:`verify_chain` walks the whole log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from core.db import utcnow
from core.models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64
_HEAD_ID = 1

# Prebuilt Core statements on the tables (not the ORM entities): audit entries are written
# inside every state change, so they skip the ORM's per-call statement processing.
_events = AuditEvent.__table__  # type: ignore[attr-defined]
_head = AuditHead.__table__  # type: ignore[attr-defined]
_BUMP_HEAD = (
    update(_head)
    .where(_head.c.id == _HEAD_ID)
    .values(last_seq=_head.c.last_seq + bindparam("count"))
    .returning(_head.c.last_seq, _head.c.last_hash)
)
_INSERT_EVENT = insert(_events)
_SET_HEAD_HASH = update(_head).where(_head.c.id == _HEAD_ID).values(last_hash=bindparam("new_hash"))


def _printable(value: str | None, limit: int) -> Any:
    # Audit fields often echo what a caller typed (a username, a client id): keep them
    # storable (no NUL for PostgreSQL, no control characters) and within the column size.
    if value is None:
        return None
    return "".join(c if c.isprintable() else "\ufffd" for c in value)[:limit]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_digest(
    *,
    seq: int,
    occurred_at: dt.datetime,
    actor: str,
    tenant: str | None,
    action: str,
    object_type: str,
    object_id: str,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of an entry's content and its predecessor's hash."""
    material = _canonical(
        {
            "seq": seq,
            "occurred_at": occurred_at.astimezone(dt.timezone.utc).isoformat(),
            "actor": actor,
            "tenant": tenant,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "outcome": outcome,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One event to append with :func:`record_many` (the fields :func:`record` takes)."""

    actor: str
    action: str
    object_type: str
    object_id: str
    outcome: str = "success"
    tenant: str | None = None
    details: dict[str, Any] | None = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    outcome: str = "success",
    tenant: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry in the caller's transaction and return its sequence number.

    The entry lands if and only if the caller's transaction commits.

    The head row is locked by an UPDATE … RETURNING first, which serialises appenders on
    PostgreSQL (row lock) and SQLite (write lock) alike. The head row itself is created by
    the first migration, so no two appenders can race to create it.
    """
    return record_many(session, [AuditEntry(actor, action, object_type, object_id, outcome, tenant, details)])[0]


def record_many(session: Session, entries: Sequence[AuditEntry]) -> list[int]:
    """Append ``entries`` in order in the caller's transaction (one head update and one
    multi-row insert for all of them); return their sequence numbers."""
    if not entries:
        return []
    connection = session.connection()
    last_seq, prev_hash = connection.execute(_BUMP_HEAD, {"count": len(entries)}).one()
    occurred_at = utcnow()
    rows, seqs = [], []
    for seq, entry in enumerate(entries, start=last_seq - len(entries) + 1):
        actor, tenant = _printable(entry.actor, 200), _printable(entry.tenant, 200)
        action, outcome = _printable(entry.action, 100), _printable(entry.outcome, 50)
        object_type, object_id = _printable(entry.object_type, 100), _printable(entry.object_id, 200)
        details_json = _canonical(entry.details or {})
        entry_hash = entry_digest(
            seq=seq, occurred_at=occurred_at, actor=actor, tenant=tenant, action=action,
            object_type=object_type, object_id=object_id, outcome=outcome,
            details=details_json, prev_hash=prev_hash,
        )
        rows.append(dict(
            seq=seq, occurred_at=occurred_at, actor=actor, tenant=tenant, action=action,
            object_type=object_type, object_id=object_id, outcome=outcome,
            details=details_json, prev_hash=prev_hash, entry_hash=entry_hash,
        ))
        seqs.append(seq)
        prev_hash = entry_hash
    connection.execute(_INSERT_EVENT, rows)
    connection.execute(_SET_HEAD_HASH, {"new_hash": prev_hash})
    return seqs


@dataclass
class ChainReport:
    """The outcome of :func:`verify_chain`."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(session: Session, *, batch: int = 5000) -> ChainReport:
    """Recompute every entry's hash and check the links, the sequence and the head."""
    report = ChainReport()
    expected_seq, prev_hash = 1, GENESIS_HASH
    last_seen = 0
    while True:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.seq > last_seen).order_by(AuditEvent.seq).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for ev in rows:
            if ev.seq != expected_seq:
                report.problems.append(f"entries {expected_seq}..{ev.seq - 1} are missing")
            if ev.prev_hash != prev_hash:
                report.problems.append(f"entry {ev.seq} does not link to its predecessor")
            recomputed = entry_digest(
                seq=ev.seq, occurred_at=ev.occurred_at, actor=ev.actor, tenant=ev.tenant,
                action=ev.action, object_type=ev.object_type, object_id=ev.object_id,
                outcome=ev.outcome, details=ev.details, prev_hash=ev.prev_hash,
            )
            if recomputed != ev.entry_hash:
                report.problems.append(f"entry {ev.seq} was altered (hash mismatch)")
            prev_hash, expected_seq, last_seen = ev.entry_hash, ev.seq + 1, ev.seq
            report.entries += 1
    head = session.get(AuditHead, _HEAD_ID)
    if head is not None:
        if head.last_seq != last_seen:
            report.problems.append(
                f"the head names entry {head.last_seq} but the log ends at {last_seen}"
            )
        elif head.last_hash != prev_hash:
            report.problems.append("the newest entry does not match the head")
    elif report.entries:
        report.problems.append("the audit head row is missing")
    return report
