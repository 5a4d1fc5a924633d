"""What changes which e-vote counts after it arrived: revocations, proxies, in-room votes.

* A holder revokes their e-vote with a signed revocation (same CMS as a ballot) received
  before the deadline; every standing ballot of theirs becomes ``revoked`` and the next
  ballot received counts. A late revocation is refused and the e-vote stays (Art. 177-2).
  An accepted revocation is logged like a ballot, in the same order of receipt, and the
  holder gets a receipt sealed by the platform that names the ballots it revoked.
* A proxy registered by the host overrides the e-vote (``overridden_by_proxy``).
* A holder who e-voted and comes in person without a timely revocation keeps the e-vote: the
  host's entry of their in-room votes is refused (``evote_stands``); they still count present.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlmodel import Session

from ca.context import Pki
from core import audit
from core.auth import Actor
from core.canonical import canonical_json
from core.db import utcnow
from core.errors import AppError, BadRequest, Conflict, NotFound
from voting import ballot_log, running, service
from voting.access import visible_meeting
from voting.ballot import Ballot, BallotError, check_choices
from voting.ballots import Receipt, signed_by_holder
from voting.evidence import status_evidence
from voting.log_records import build_revocation as build_revocation  # the holder's side, re-exported
from voting.log_records import log_time, parse_revocation, revocation_log_entry
from voting.models import AgendaItemRow, Attendance, BallotRevocation, BallotRow, Holder, Meeting, Recusal

REVOCATION_RECEIPT_TYPE = "cloudseal.revocation-receipt/1"
STANDING = ("counted", "superseded")


@dataclass(frozen=True)
class AcceptedRevocation:
    """An accepted revocation: how many ballots it revoked, its log leaf and the holder's receipt."""

    revoked_ballots: int
    leaf_index: int
    receipt: Receipt


def check_revocation_open(status: str, closes_at: dt.datetime, received_at: dt.datetime) -> None:
    """409 ``revocation_too_late`` unless a revocation received at ``received_at`` is before
    the deadline of a published meeting (Art. 177-2; a late one leaves the e-vote in force)."""
    if received_at >= closes_at or status != "published":
        raise Conflict("the revocation deadline has passed: the e-vote stays in force", code="revocation_too_late")


def revoke_evote(session: Session, pki: Pki, *, payload: bytes, cms: bytes, meeting_public_id: str | None = None,
                 received_at: dt.datetime | None = None) -> AcceptedRevocation:
    """Revoke the holder's e-vote, log the revocation and seal a receipt for it.

    The meeting row is locked before the log, as for a ballot, so ballots and revocations
    take consecutive leaves in the order they were received. The receipt (status
    ``revoked``) names the revoked ballots, the leaf and the new signed tree head.
    409 ``revocation_too_late`` at or after the deadline (the e-vote stays in force),
    409 ``duplicate_revocation`` for a replay, 409 ``nothing_to_revoke`` when the holder has
    no standing ballot; a refused revocation logs nothing.
    """
    stamp_on_lock = received_at is None
    received_at = received_at or utcnow()
    data = parse_revocation(payload)
    if meeting_public_id is not None and data["meeting"] != meeting_public_id:
        raise BadRequest("the revocation was signed for another meeting", code="meeting_mismatch")
    meeting = session.execute(select(Meeting).where(Meeting.public_id == data["meeting"])
                              .with_for_update()).scalar_one_or_none()
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    if stamp_on_lock:  # received when its turn came: the order of the log is the order of receipt
        received_at = utcnow()
    check_revocation_open(meeting.status, meeting.closes_at, received_at)
    payload_sha256 = hashlib.sha256(payload).hexdigest()
    if session.execute(select(BallotRevocation.id).where(BallotRevocation.meeting_id == meeting.id)
                       .where(BallotRevocation.payload_sha256 == payload_sha256)).first():
        raise Conflict("this revocation was already received", code="duplicate_revocation")
    signed = signed_by_holder(session, pki, meeting.id or 0, data["holder"], payload, cms)
    holder = signed.holder
    standing = session.execute(select(BallotRow.id, BallotRow.ballot_sha256).where(BallotRow.meeting_id == meeting.id)
                               .where(BallotRow.holder_id == holder.id)
                               .where(BallotRow.status.in_(STANDING))  # type: ignore[attr-defined]
                               .order_by(BallotRow.leaf_index)).all()
    if not standing:
        raise Conflict("there is no e-vote to revoke", code="nothing_to_revoke")
    revoked = [row.ballot_sha256 for row in standing]
    evidence = status_evidence(session, pki, signed.signer_serial, received_at)
    index, tree_head = ballot_log.append(
        session, pki, meeting_id=meeting.id or 0, meeting_public_id=meeting.public_id,
        entry=revocation_log_entry(meeting.public_id, holder.holder_no, payload_sha256,
                                   hashlib.sha256(cms).hexdigest(), revoked, received_at))
    statement = {"type": REVOCATION_RECEIPT_TYPE, "meeting": meeting.public_id, "holder": holder.holder_no,
                 "revocation_sha256": payload_sha256, "revoked": revoked, "leaf_index": index,
                 "received_at": log_time(received_at), "tree_head": tree_head.to_json()}
    signature, serial = ballot_log.seal(session, pki, canonical_json(statement))
    receipt = Receipt(statement, signature, serial, "revoked")
    _count_out(session, meeting, [row.id for row in standing])
    session.execute(update(BallotRow).where(BallotRow.id.in_([row.id for row in standing]))  # type: ignore[union-attr]
                    .values(status="revoked"))
    for row in standing:
        session.add(BallotRevocation(meeting_id=meeting.id or 0, holder_id=holder.id or 0, ballot_id=row.id,
                                     received_at=received_at, payload=payload, payload_sha256=payload_sha256,
                                     cms=cms, leaf_index=index, receipt=json.dumps(receipt.to_json()),
                                     revocation_evidence=evidence))
    session.flush()
    audit.record(session, actor=f"holder:{holder.holder_no}", tenant=meeting.issuer_code, action="ballot.revoke",
                 object_type="meeting", object_id=meeting.public_id,
                 details={"ballots": len(standing), "leaf_index": index})
    return AcceptedRevocation(len(standing), index, receipt)


def _holder(session: Session, meeting: Meeting, holder_no: str) -> Holder:
    holder = session.execute(select(Holder).where(Holder.meeting_id == meeting.id)
                             .where(Holder.holder_no == holder_no)).scalar_one_or_none()
    if holder is None:
        raise NotFound("no such holder on this meeting's register", code="unknown_holder")
    return holder


def _counted_evote(session: Session, meeting: Meeting, holder: Holder) -> int | None:
    return session.execute(select(BallotRow.id).where(BallotRow.meeting_id == meeting.id)
                           .where(BallotRow.holder_id == holder.id)
                           .where(BallotRow.status == "counted")).scalar_one_or_none()


def _count_out(session: Session, meeting: Meeting, ballot_ids: list[int]) -> None:
    """Take those of ``ballot_ids`` that count out of the running totals (before their status changes)."""
    agenda = service.agenda_of(service.agenda_rows(session, meeting.id or 0))
    elections = {item.item_id for item in agenda if item.is_election}
    running.apply(session, meeting.id or 0, agenda,
                  running.counted_ballots(session, meeting.id or 0, ballot_ids, elections), sign=-1)


def _override_evote(session: Session, meeting: Meeting, holder: Holder) -> None:
    counted = _counted_evote(session, meeting, holder)
    if counted is not None:
        _count_out(session, meeting, [counted])
    session.execute(update(BallotRow).where(BallotRow.meeting_id == meeting.id).where(BallotRow.holder_id == holder.id)
                    .where(BallotRow.status.in_(STANDING))  # type: ignore[attr-defined]
                    .values(status="overridden_by_proxy"))


def register_proxy(session: Session, *, actor: Actor, meeting_id: int, holder_no: str, proxy_name: str) -> None:
    """The host registers a proxy for a holder: it overrides the holder's e-vote."""
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status != "published":
        raise Conflict(f"the meeting is {meeting.status}", code="meeting_not_published")
    holder = _holder(session, meeting, holder_no)
    existing = session.execute(select(Attendance).where(Attendance.meeting_id == meeting.id)
                               .where(Attendance.holder_id == holder.id)).scalar_one_or_none()
    if existing is not None:
        raise Conflict("this holder's attendance is already recorded", code="attendance_exists")
    session.add(Attendance(meeting_id=meeting.id or 0, holder_id=holder.id or 0, mode="proxy", proxy_name=proxy_name,
                           entered_by=actor.label, entered_at=utcnow()))
    _override_evote(session, meeting, holder)
    session.flush()
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="attendance.proxy",
                 object_type="meeting", object_id=meeting.public_id, details={"holder": holder_no})


def record_attendance(session: Session, *, actor: Actor, meeting_id: int, holder_no: str, mode: str,
                      choices: dict[str, object]) -> None:
    """The host records a holder in the room (or their proxy's) votes, once the window closed.

    An e-voter who did not revoke in time keeps the e-vote: in-room votes are refused with
    409 ``evote_stands`` (the holder may still be recorded present with no choices).
    """
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status != "published":
        raise Conflict(f"the meeting is {meeting.status}", code="meeting_not_published")
    if utcnow() < meeting.closes_at:
        raise Conflict("in-room votes are entered at the meeting", code="meeting_not_started")
    if mode not in ("in_person", "proxy"):
        raise BadRequest("mode is in_person or proxy", code="invalid_mode")
    holder = _holder(session, meeting, holder_no)
    if mode == "in_person" and choices and _counted_evote(session, meeting, holder) is not None:
        raise Conflict("this holder voted electronically and did not revoke in time: the e-vote stands",
                       code="evote_stands")
    rows = service.agenda_rows(session, meeting.id or 0)
    ballot = Ballot(meeting.public_id, holder_no, {k: v for k, v in choices.items()}, "host", utcnow(), b"")
    shares = holder.shares - holder.non_voting_shares
    try:
        check_choices(ballot, service.agenda_of(rows), nominee=holder.nominee,
                      votable_shares={r.item_key: shares for r in rows}, in_room=True)
    except BallotError as exc:
        raise AppError(str(exc), code=exc.code, status_code=400) from exc
    existing = session.execute(select(Attendance).where(Attendance.meeting_id == meeting.id)
                               .where(Attendance.holder_id == holder.id)).scalar_one_or_none()
    if existing is not None and existing.mode != mode:
        raise Conflict("this holder's attendance is recorded another way", code="attendance_exists")
    record = existing or Attendance(meeting_id=meeting.id or 0, holder_id=holder.id or 0, mode=mode,
                                    entered_by=actor.label, entered_at=utcnow())
    record.choices = json.dumps(choices, sort_keys=True)
    record.entered_by, record.entered_at = actor.label, utcnow()
    session.add(record)
    if mode == "proxy":  # a proxy overrides the e-vote, however the host enters it
        _override_evote(session, meeting, holder)
    session.flush()
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="attendance.record",
                 object_type="meeting", object_id=meeting.public_id, details={"holder": holder_no, "mode": mode})


def record_recusal(session: Session, *, actor: Actor, meeting_id: int, item_key: str, holder_no: str,
                   reason: str) -> None:
    """A holder with a personal interest in an item (Art. 178): present for the quorum, out of
    that item's votes (Art. 180). Entered by the host before the tally is frozen."""
    meeting = visible_meeting(session, actor, meeting_id, for_update=True)
    if meeting.status == "frozen":
        raise Conflict("the meeting is frozen", code="meeting_frozen")
    item = session.execute(select(AgendaItemRow).where(AgendaItemRow.meeting_id == meeting.id)
                           .where(AgendaItemRow.item_key == item_key)).scalar_one_or_none()
    if item is None:
        raise NotFound("no such agenda item", code="unknown_item")
    holder = _holder(session, meeting, holder_no)
    if session.execute(select(Recusal.id).where(Recusal.item_id == item.id)
                       .where(Recusal.holder_id == holder.id)).first():
        raise Conflict("this recusal is already recorded", code="recusal_exists")
    session.add(Recusal(item_id=item.id or 0, holder_id=holder.id or 0, reason=reason, entered_by=actor.label))
    session.flush()
    audit.record(session, actor=actor.label, tenant=meeting.issuer_code, action="recusal.record",
                 object_type="meeting", object_id=meeting.public_id, details={"item": item_key, "holder": holder_no})
