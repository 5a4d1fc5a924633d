"""Voting from the app in two calls: ``prepare`` then ``submit``, one PIN entry.

``prepare`` builds the canonical bytes (a ballot from the investor's choices, checked
against the agenda and the holder's shares, or a revocation), keeps them server-side bound
to their SHA-256 and to one fresh device challenge, and returns both. The device signs the
challenge together with that digest (the signing service's ``authorize:`` action), so
``submit`` — PIN + that signature — authorises exactly these bytes and nothing else:

1. the prepared submission is claimed (single use; a second ``submit`` is refused);
2. the signing service checks device proof and PIN (wrong PINs count toward the lockout)
   and makes the detached CAdES-BES CMS with the investor's HSM key;
3. the voting service receives it (every rule is its own) and seals the receipt, which is
   kept with the submission and enters the investor's inbox.

All in one transaction: a refusal by the voting service leaves nothing behind, except a
wrong PIN, whose count (and the spent challenge and claim) is committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlmodel import Session

from ca.context import Pki
from core.db import utcnow
from core.errors import AppError, Conflict, NotFound
from mobile_api import holdings, inbox
from mobile_api.auth import MobileCaller
from mobile_api.models import MobileSubmission
from ra import devices
from ra.models import AppChallenge
from signing import service as signing_service
from voting import attendance, ballots
from voting import service as voting_service
from voting.ballot import BallotError, build_ballot, check_choices, new_nonce, parse_ballot
from voting.ballots import Receipt
from voting.log_records import build_revocation
from voting.models import BallotRow, Meeting

DIGEST_ALGORITHM = "sha256"
BALLOT, REVOCATION = "ballot", "revocation"


@dataclass(frozen=True)
class Prepared:
    """A submission waiting for the investor's PIN and device signature."""

    submission: MobileSubmission
    meeting: Meeting
    challenge: AppChallenge


@dataclass(frozen=True)
class Submitted:
    """An accepted ballot or revocation: its sealed receipt and the investor's own CMS."""

    submission: MobileSubmission
    meeting: Meeting
    receipt: Receipt
    cms: bytes
    revoked_ballots: int | None


def prepare_ballot(session: Session, reader: Session, caller: MobileCaller, *, meeting_public_id: str,
                   holder_no: str | None, choices: Mapping[str, object],
                   now: dt.datetime | None = None) -> Prepared:
    """The canonical ballot for ``choices``, checked against the agenda and the holder's
    votable shares (an over-allocated election is left for the voting service to void),
    and a device challenge bound to it."""
    now = now or utcnow()
    view = holdings.meeting_view(reader, caller, meeting_public_id, statuses=False)
    holder = holdings.holder_for(view, holder_no)
    meeting = view.meeting
    ballots.check_open(meeting.status, meeting.opens_at, meeting.closes_at, now)  # before anything is signed
    rows = voting_service.agenda_rows(reader, meeting.id or 0)
    try:
        payload = build_ballot(meeting.public_id, holder.holder_no, choices, new_nonce(), now)  # type: ignore[arg-type]
        check_choices(parse_ballot(payload), voting_service.agenda_of(rows), nominee=holder.nominee,
                      votable_shares=ballots.votable_shares(holder, rows))
    except BallotError as exc:
        raise AppError(exc.message, code=exc.code, status_code=400) from exc
    return _prepare(session, caller, meeting, holder.holder_no, BALLOT, payload, now)


def prepare_revocation(session: Session, reader: Session, caller: MobileCaller, *, meeting_public_id: str,
                       holder_no: str | None, now: dt.datetime | None = None) -> Prepared:
    """The canonical revocation of the holder's e-vote and a device challenge bound to it;
    409 ``revocation_too_late`` after the deadline, ``nothing_to_revoke`` without a standing e-vote."""
    now = now or utcnow()
    view = holdings.meeting_view(reader, caller, meeting_public_id, statuses=False)
    holder = holdings.holder_for(view, holder_no)
    meeting = view.meeting
    attendance.check_revocation_open(meeting.status, meeting.closes_at, now)
    standing = reader.execute(select(BallotRow.id).where(BallotRow.holder_id == holder.id)
                              .where(BallotRow.status.in_(attendance.STANDING)).limit(1)).first()  # type: ignore[attr-defined]
    if standing is None:
        raise Conflict("there is no e-vote to revoke", code="nothing_to_revoke")
    payload = build_revocation(meeting.public_id, holder.holder_no, new_nonce(), now)
    return _prepare(session, caller, meeting, holder.holder_no, REVOCATION, payload, now)


def _prepare(session: Session, caller: MobileCaller, meeting: Meeting, holder_no: str, kind: str, payload: bytes,
             now: dt.datetime) -> Prepared:
    # The investor's expired submissions that never got a receipt are of no further use.
    session.execute(delete(MobileSubmission).where(MobileSubmission.investor_id == caller.investor_id)
                    .where(MobileSubmission.receipt.is_(None))  # type: ignore[union-attr]
                    .where(MobileSubmission.expires_at <= now))  # type: ignore[operator]
    challenge = devices.issue_challenge(session, caller.credential_id)
    submission = MobileSubmission(
        id=uuid.uuid4().hex, investor_id=caller.investor_id, credential_id=caller.credential_id,
        meeting_id=meeting.id or 0, holder_no=holder_no, kind=kind, payload=payload,
        payload_sha256=hashlib.sha256(payload).hexdigest(), challenge_id=challenge.id, created_at=now,
        expires_at=challenge.expires_at)
    session.add(submission)
    session.flush()
    return Prepared(submission, meeting, challenge)


def _claim(session: Session, reader: Session, caller: MobileCaller, submission_id: str,
           now: dt.datetime) -> MobileSubmission:
    submission = reader.get(MobileSubmission, submission_id)
    if (submission is None or submission.investor_id != caller.investor_id
            or submission.credential_id != caller.credential_id):
        raise NotFound("no such prepared submission", code="unknown_submission")
    if submission.used_at is not None:
        raise Conflict("this prepared submission was already used", code="submission_used")
    if submission.expires_at <= now:
        raise Conflict("this prepared submission has expired", code="submission_expired")
    claimed = session.execute(
        update(MobileSubmission).where(MobileSubmission.id == submission_id)
        .where(MobileSubmission.used_at.is_(None))  # type: ignore[union-attr]
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise Conflict("this prepared submission was already used", code="submission_used")
    return submission


def submit(session: Session, reader: Session, pki: Pki, caller: MobileCaller, *, submission_id: str, pin: str,
           device_signature: str, push: inbox.PushProvider = inbox.NO_PUSH,
           now: dt.datetime | None = None) -> Submitted:
    """Authorise, sign and submit a prepared ballot or revocation (see the module docstring).

    ``reader`` serves the reads made before the write transaction needs its lock (on
    PostgreSQL it may be ``session`` itself). Refusals keep their services' codes:
    ``bad_device_proof`` (a proof for other bytes), ``wrong_pin``, ``pin_locked``,
    ``voting_closed``, ``duplicate_ballot`` …; 404 ``unknown_submission``, 409
    ``submission_used`` / ``submission_expired``.
    """
    now = now or utcnow()
    submission = _claim(session, reader, caller, submission_id, now)
    # The meeting's lock before the signature's audit entry: every ballot path takes the
    # meeting first and the audit head last, so none waits on another in the opposite order.
    meeting = session.get(Meeting, submission.meeting_id, with_for_update=True)
    if meeting is None:
        raise NotFound("no such meeting", code="unknown_meeting")
    digest = hashlib.sha256(submission.payload).digest()
    cms = signing_service.sign_cms(
        session, pki, credential_id=caller.credential_id, pin=pin, digest=digest, hash_algorithm=DIGEST_ALGORITHM,
        client=f"mobile:{caller.reference}", purpose=submission.kind, challenge_id=submission.challenge_id,
        device_signature=device_signature, reader=reader)
    revoked = None
    if submission.kind == BALLOT:
        # Reads through the write session: it sees the signature just logged.
        receipt = ballots.submit_ballot(session, pki, payload=submission.payload, cms=cms,
                                        meeting_public_id=meeting.public_id, reader=session)
    else:
        accepted = attendance.revoke_evote(session, pki, payload=submission.payload, cms=cms,
                                           meeting_public_id=meeting.public_id)
        receipt, revoked = accepted.receipt, accepted.revoked_ballots
    kept = {**receipt.to_json(), "cms_sha256": hashlib.sha256(cms).hexdigest()}
    session.execute(update(MobileSubmission).where(MobileSubmission.id == submission.id)
                    .values(cms_sha256=kept["cms_sha256"], receipt=json.dumps(kept))
                    .execution_options(synchronize_session=False))
    received_at = dt.datetime.fromisoformat(str(receipt.statement["received_at"]).replace("Z", "+00:00"))
    inbox.add(session, investor_id=caller.investor_id, investor_reference=caller.reference, push=push, events=[
        inbox.receipt_event(submission.kind, meeting, submission.holder_no, submission.payload_sha256,
                            receipt.status, received_at)])
    return Submitted(submission, meeting, receipt, cms, revoked)
