"""The inbox the app polls, and the hook a push provider plugs into.

Entries are stored (:class:`mobile_api.models.MobileNotification`), numbered 1, 2, 3 … per
investor under a lock of the investor's :class:`~mobile_api.models.MobileInboxState` row,
so ``seq`` follows commit order and a client polling "since N" never misses one. Each event
enters once (a unique ``dedupe_key``).

What enters, and when:

* ``new_meeting`` — a published meeting where the investor holds shares, still open for e-voting;
* ``deadline`` — three days before the e-voting deadline, if the investor has not voted;
* ``receipt`` — a ballot or revocation received (at once when sent through the app);
* ``result`` — the meeting's tally frozen (published) after the investor joined;
* ``certificate`` — the credential revoked, suspended, resumed or renewed (from the audit log).

Events of other contexts (a meeting published, a result frozen, an officer suspending the
certificate) are picked up by :func:`sync`, which the inbox endpoint runs before reading
and which only writes when something is new. Every stored entry is handed to the
:class:`PushProvider` once its transaction commits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import event, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from core.db import utcnow
from core.models import AuditEvent
from mobile_api import i18n
from mobile_api.holdings import meetings_held, with_statuses
from mobile_api.models import MobileInboxState, MobileNotification
from ra.models import Credential, Investor
from voting.models import BallotRevocation, BallotRow, Holder, Meeting

log = logging.getLogger("cloudseal.mobile.inbox")

REMINDER_LEAD = dt.timedelta(days=3)
CERTIFICATE_ACTIONS = {"credential.revoke": "revoked", "credential.suspend": "suspended",
                       "credential.resume": "resumed", "credential.renew": "renewed"}
_NOTIFICATIONS = MobileNotification.__table__  # type: ignore[attr-defined]
_STATE = MobileInboxState.__table__  # type: ignore[attr-defined]
_PENDING_PUSH = "mobile_pending_push"


@dataclass(frozen=True)
class Notification:
    """One inbox entry, language-neutral (``render`` gives its title and body)."""

    seq: int
    kind: str
    variant: str
    meeting: str | None
    data: dict[str, Any]
    occurred_at: dt.datetime
    created_at: dt.datetime


class PushProvider(Protocol):
    """Where stored notifications go out to the phone (APNs, FCM …)."""

    def send(self, investor_reference: str, notification: Notification) -> None:
        """Deliver one notification; called after its transaction committed. Best effort:
        an exception is logged and the notification stays in the inbox."""
        ...


class NoPush:
    """The default provider: the app polls its inbox, nothing is pushed."""

    def send(self, investor_reference: str, notification: Notification) -> None:
        """Do nothing."""


NO_PUSH = NoPush()


@dataclass(frozen=True)
class Event:
    """Something that may enter an investor's inbox (once, by ``key``)."""

    key: str
    kind: str
    variant: str
    meeting: str | None
    data: dict[str, Any]
    occurred_at: dt.datetime


def _meeting_data(meeting: Meeting, issuer_name: str) -> dict[str, Any]:
    return {"meeting": meeting.public_id, "title": meeting.title, "issuer": issuer_name,
            "issuer_code": meeting.issuer_code, "closes_at": meeting.closes_at.isoformat()}


def meeting_events(reader: Session, investor_id: int, id_hmac: str, now: dt.datetime) -> list[Event]:
    """New meetings, deadline reminders and published results of the investor's holdings."""
    investor = reader.get(Investor, investor_id)
    joined = investor.created_at if investor else now
    found = []
    for view in with_statuses(reader, meetings_held(reader, id_hmac)):
        meeting, data = view.meeting, _meeting_data(view.meeting, view.issuer_name)
        if meeting.status == "published" and now < meeting.closes_at:
            # When it reached the investor: the window opened, they joined, or the meeting was made.
            seen_from = min(now, max(meeting.opens_at, joined, meeting.created_at))
            found.append(Event(f"meeting:{meeting.public_id}", "new_meeting", "new_meeting", meeting.public_id,
                               data, seen_from))
            remind_at = meeting.closes_at - REMINDER_LEAD
            if remind_at <= now and view.status == "not_voted":
                found.append(Event(f"deadline:{meeting.public_id}", "deadline", "deadline", meeting.public_id,
                                   data, remind_at))
        if meeting.status == "frozen" and meeting.frozen_at is not None and meeting.frozen_at >= joined:
            found.append(Event(f"result:{meeting.public_id}", "result", "result", meeting.public_id,
                               {**data, "frozen_at": meeting.frozen_at.isoformat()}, meeting.frozen_at))
    return found


def receipt_event(kind: str, meeting: Meeting, holder_no: str, sha256: str, status: str,
                  received_at: dt.datetime) -> Event:
    """The inbox entry of a ballot (``kind`` ballot) or revocation received."""
    return Event(f"{kind}:{sha256}", "receipt", f"receipt.{kind}", meeting.public_id,
                 {"meeting": meeting.public_id, "title": meeting.title, "holder_no": holder_no,
                  "sha256": sha256, "status": status, "kind": kind}, received_at)


def receipt_events(reader: Session, id_hmac: str) -> list[Event]:
    """Every ballot and revocation received for the investor's register lines, however sent."""
    found = []
    ballots = (select(BallotRow.ballot_sha256, BallotRow.status, BallotRow.received_at, Holder.holder_no, Meeting)
               .join(Holder, Holder.id == BallotRow.holder_id).join(Meeting, Meeting.id == BallotRow.meeting_id)
               .where(Holder.id_hmac == id_hmac))
    for sha, status, received_at, holder_no, meeting in reader.execute(ballots):
        found.append(receipt_event("ballot", meeting, holder_no, sha, status, received_at))
    revocations = (select(BallotRevocation.payload_sha256, BallotRevocation.received_at, Holder.holder_no, Meeting)
                   .join(Holder, Holder.id == BallotRevocation.holder_id)
                   .join(Meeting, Meeting.id == BallotRevocation.meeting_id)
                   .where(Holder.id_hmac == id_hmac).distinct())
    for sha, received_at, holder_no, meeting in reader.execute(revocations):
        found.append(receipt_event("revocation", meeting, holder_no, sha, "revoked", received_at))
    return found


def certificate_events(reader: Session, investor_id: int) -> list[Event]:
    """Changes to the investor's credentials, read from the audit log (whoever made them)."""
    credential_ids = select(Credential.credential_id).where(Credential.investor_id == investor_id)
    rows = reader.execute(
        select(AuditEvent.seq, AuditEvent.action, AuditEvent.object_id, AuditEvent.occurred_at, AuditEvent.details)
        .where(AuditEvent.action.in_(list(CERTIFICATE_ACTIONS)))  # type: ignore[attr-defined]
        .where(AuditEvent.object_type == "credential").where(AuditEvent.outcome == "success")
        .where(AuditEvent.object_id.in_(credential_ids)))  # type: ignore[attr-defined]
    found = []
    for seq, action, credential_id, occurred_at, details in rows:
        change = CERTIFICATE_ACTIONS[action]
        data = {"credential_id": credential_id, "change": change}
        reason = json.loads(details).get("reason")
        if reason:
            data["reason"] = str(reason)
        found.append(Event(f"certificate:{seq}", "certificate", f"certificate.{change}", None, data, occurred_at))
    return found


def _locked_last_seq(session: Session, investor_id: int) -> int:
    connection = session.connection()
    statement = select(_STATE.c.last_seq).where(_STATE.c.investor_id == investor_id).with_for_update()
    last = connection.execute(statement).scalar_one_or_none()
    if last is None:
        insert_state = sqlite_insert if connection.dialect.name == "sqlite" else pg_insert
        connection.execute(insert_state(_STATE).values(investor_id=investor_id, last_seq=0)
                           .on_conflict_do_nothing(index_elements=["investor_id"]))
        last = connection.execute(statement).scalar_one()
    return last


def add(session: Session, *, investor_id: int, investor_reference: str, events: list[Event],
        push: PushProvider = NO_PUSH, now: dt.datetime | None = None) -> list[Notification]:
    """Store the events not yet in the investor's inbox, in order; push them once committed."""
    if not events:
        return []
    now = now or utcnow()
    last = _locked_last_seq(session, investor_id)
    known = set(session.execute(select(MobileNotification.dedupe_key).where(
        MobileNotification.investor_id == investor_id).where(
        MobileNotification.dedupe_key.in_([e.key for e in events]))).scalars())  # type: ignore[attr-defined]
    fresh: list[tuple[Notification, str]] = []
    seen = set(known)
    for item in sorted(events, key=lambda e: e.occurred_at):
        if item.key not in seen:
            seen.add(item.key)
            last += 1
            fresh.append((Notification(last, item.kind, item.variant, item.meeting, item.data, item.occurred_at,
                                       now), item.key))
    if not fresh:
        return []
    session.connection().execute(insert(_NOTIFICATIONS), [
        {"investor_id": investor_id, "seq": n.seq, "kind": n.kind, "dedupe_key": key,
         "meeting_public_id": n.meeting, "data": json.dumps({"variant": n.variant, **n.data}, ensure_ascii=False),
         "occurred_at": n.occurred_at, "created_at": now} for n, key in fresh])
    session.connection().execute(update(_STATE).where(_STATE.c.investor_id == investor_id).values(last_seq=last))
    notifications = [n for n, _ in fresh]
    _push_after_commit(session, push, investor_reference, notifications)
    return notifications


def _push_after_commit(session: Session, push: PushProvider, reference: str, fresh: list[Notification]) -> None:
    pending: list[tuple[PushProvider, str, Notification]] = session.info.setdefault(_PENDING_PUSH, [])
    if not pending:
        def deliver(_session: Session) -> None:
            for provider, who, notification in session.info.pop(_PENDING_PUSH, []):
                try:
                    provider.send(who, notification)
                except Exception:  # push is best effort: the entry stays in the inbox
                    log.exception("push of inbox entry %s failed", notification.seq)

        event.listen(session, "after_commit", deliver, once=True)
        event.listen(session, "after_soft_rollback", lambda _s, _t: session.info.pop(_PENDING_PUSH, None), once=True)
    pending.extend((push, reference, n) for n in fresh)


def sync(session: Session, reader: Session, *, investor_id: int, investor_reference: str, id_hmac: str,
         push: PushProvider = NO_PUSH, now: dt.datetime | None = None) -> list[Notification]:
    """Bring the investor's inbox up to date with what happened elsewhere; writes (and
    takes the inbox lock) only when there is something new."""
    now = now or utcnow()
    events = (meeting_events(reader, investor_id, id_hmac, now) + receipt_events(reader, id_hmac)
              + certificate_events(reader, investor_id))
    known = set(reader.execute(select(MobileNotification.dedupe_key)
                               .where(MobileNotification.investor_id == investor_id)).scalars())
    fresh = [e for e in events if e.key not in known]
    return add(session, investor_id=investor_id, investor_reference=investor_reference, events=fresh,
               push=push, now=now)


def page(reader: Session, investor_id: int, *, since: int, limit: int) -> tuple[list[Notification], bool]:
    """The entries after ``since`` (oldest first), at most ``limit``, and whether more follow."""
    rows = reader.execute(select(MobileNotification).where(MobileNotification.investor_id == investor_id)
                          .where(MobileNotification.seq > since).order_by(MobileNotification.seq)
                          .limit(limit + 1)).scalars().all()
    notes = []
    for row in rows[:limit]:
        data = json.loads(row.data)
        variant = data.pop("variant", row.kind)
        notes.append(Notification(row.seq, row.kind, variant, row.meeting_public_id, data, row.occurred_at,
                                  row.created_at))
    return notes, len(rows) > limit


def render(notification: Notification, language: str) -> tuple[str, str]:
    """Title and body of an entry in ``language`` (times in Asia/Taipei)."""
    data = notification.data
    values = {"title": str(data.get("title", "")), "issuer": str(data.get("issuer", ""))}
    if "closes_at" in data:
        values["deadline"] = i18n.last_moment(dt.datetime.fromisoformat(data["closes_at"]), language)
    return i18n.notification_text(notification.variant, language, **values)
