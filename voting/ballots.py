"""Receiving signed ballots: the acceptance checks, the first-received rule, the log, the receipt.

A ballot is accepted when its detached CMS is valid over the canonical payload, the signer
certificate chains to the platform's issuing CA and is good at receipt, the certificate's
investor is the registered holder the ballot names, the meeting named in the payload is
open, and the choices fit the agenda. Each check has its own error code. Every accepted
ballot is stored and logged; only the first one received counts (Art. 177-2) unless the
holder revoked it in time, and a registered proxy overrides the e-vote. One counted ballot
per holder is also a partial unique index, so the rule holds under any concurrency.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import rfc8785
from sqlalchemy import bindparam, insert, select
from sqlmodel import Session

from ca.context import Pki
from core import audit
from core.db import utcnow
from core.errors import AppError, BadRequest, Conflict, NotFound
from ra.models import Credential, Investor
from signing.evidence import platform_verifier
from voting import ballot_log, running, service
from voting.ballot import BallotError, check_choices, parse_ballot, typed_choices
from voting.evidence import status_evidence
from voting.log_records import log_entry
from voting.models import Attendance, BallotRow, Holder, Meeting

RECEIPT_TYPE = "cloudseal.receipt/1"
MAX_BALLOT_BYTES = 64 * 1024
MAX_CMS_BYTES = 32 * 1024
# Verifier reasons → the ballot error codes the app shows.
_SIGNATURE_CODES = {"revoked": "certificate_revoked", "on_hold": "certificate_on_hold",
                    "expired": "certificate_expired", "not_yet_valid": "certificate_not_yet_valid",
                    "untrusted_chain": "untrusted_certificate", "revocation_unknown": "certificate_status_unknown"}

# The statements of the ballot path are built once: constructing one costs more than running it.
_MEETING = select(Meeting).where(Meeting.public_id == bindparam("public_id"))
_SIGNER = (select(Investor.reference, Investor.id_hmac).join(Credential, Credential.investor_id == Investor.id)
           .where(Credential.certificate_serial == bindparam("serial")))
_HOLDER = select(Holder).where(Holder.meeting_id == bindparam("meeting_id")).where(
    Holder.holder_no == bindparam("holder_no"))
_LOCK_MEETING = (select(Meeting.status, Meeting.opens_at, Meeting.closes_at)
                 .where(Meeting.id == bindparam("meeting_id")).with_for_update())
_HOLDER_NOW = select(Holder.id, Holder.id_hmac).where(Holder.meeting_id == bindparam("meeting_id")).where(
    Holder.holder_no == bindparam("holder_no"))
_DUPLICATE = select(BallotRow.id).where(BallotRow.meeting_id == bindparam("meeting_id")).where(
    BallotRow.ballot_sha256 == bindparam("ballot_sha256"))
_PROXY = (select(Attendance.id).where(Attendance.meeting_id == bindparam("meeting_id"))
          .where(Attendance.holder_id == bindparam("holder_id")).where(Attendance.mode == "proxy"))
_STANDING = (select(BallotRow.id).where(BallotRow.meeting_id == bindparam("meeting_id"))
             .where(BallotRow.holder_id == bindparam("holder_id"))
             .where(BallotRow.status.in_(("counted", "superseded"))))  # type: ignore[attr-defined]
_INSERT_BALLOT = insert(BallotRow)


@dataclass(frozen=True)
class Receipt:
    """What the holder keeps: the sealed statement that the ballot was received and logged."""

    statement: dict[str, object]
    signature: bytes
    seal_serial: str
    status: str

    def to_json(self) -> dict[str, object]:
        """The receipt as the API returns it and the holder keeps it (signature in base64)."""
        return {"receipt": self.statement, "signature": base64.b64encode(self.signature).decode(),
                "seal_serial": self.seal_serial, "status": self.status}


def _refuse(code: str, message: str, status: int = 400) -> AppError:
    return AppError(message, code=code, status_code=status)


def _signer_identity(session: Session, serial: str) -> tuple[str, str]:
    """The investor reference and identity HMAC behind a certificate serial."""
    row = session.connection().execute(_SIGNER, {"serial": serial}).first()
    if row is None:
        raise _refuse("not_the_holder", "the signer's certificate belongs to no investor here", 403)
    return row.reference, row.id_hmac


@dataclass(frozen=True)
class SignedBy:
    """Who signed a submission (ballot or revocation): the registered holder and their certificate."""

    holder: Holder
    signer_serial: str
    investor_reference: str
    id_hmac: str


def signed_by_holder(reader: Session, pki: Pki, meeting: Meeting, holder_no: str, payload: bytes,
                     cms: bytes) -> SignedBy:
    """The checks every signed submission passes: the CMS is valid over ``payload``, the
    certificate is good now, and its investor is the registered holder ``holder_no``."""
    result = platform_verifier(reader, pki).verify(cms, digest=hashlib.sha256(payload).digest())
    if not result.valid:
        code = _SIGNATURE_CODES.get(result.reason or "", "invalid_signature")
        raise _refuse(code, result.message or "the signature is not valid")
    if result.status_now != "good" or result.signer is None:
        raise _refuse("certificate_not_good", "the signer's certificate is not good now")
    reference, id_hmac = _signer_identity(reader, result.signer.serial)
    holder = reader.execute(_HOLDER, {"meeting_id": meeting.id, "holder_no": holder_no}).scalar_one_or_none()
    if holder is None or holder.id_hmac != id_hmac:
        raise _refuse("not_the_holder", "the signer is not the registered holder named", 403)
    return SignedBy(holder, result.signer.serial, reference, id_hmac)


def votable_shares(holder: Holder, agenda_rows: list) -> dict[str, int]:
    """The shares a holder votes on each agenda item (Art. 179), as ``check_choices`` takes them."""
    # Recusals (Art. 178) are applied by the tally, not by refusing the ballot: a recusal may
    # be entered after the holder voted, and the rest of the ballot counts either way.
    shares = holder.shares - holder.non_voting_shares
    return {row.item_key: shares for row in agenda_rows}


def submit_ballot(session: Session, pki: Pki, *, payload: bytes, cms: bytes, meeting_public_id: str | None = None,
                  received_at: dt.datetime | None = None, reader: Session | None = None) -> Receipt:
    """Check, store, log and seal a receipt for one signed ballot (see the module docstring).

    ``meeting_public_id`` is the meeting the ballot was sent to: a ballot signed for another
    meeting is refused (``meeting_mismatch``), so none can be replayed elsewhere. The checks
    read through ``reader`` (default ``session``); only the recording locks the meeting, so
    on SQLite the write lock is not held while the CMS is verified.
    """
    reader = reader or session
    stamp_on_lock = received_at is None
    received_at = received_at or utcnow()
    if len(payload) > MAX_BALLOT_BYTES or len(cms) > MAX_CMS_BYTES:
        raise _refuse("ballot_too_large", "the ballot or its signature is too large", 413)
    try:
        ballot = parse_ballot(payload)
    except BallotError as exc:
        raise _refuse(exc.code, str(exc)) from exc
    if meeting_public_id is not None and ballot.meeting_id != meeting_public_id:
        raise _refuse("meeting_mismatch", "the ballot was signed for another meeting")
    meeting = reader.execute(_MEETING, {"public_id": ballot.meeting_id}).scalar_one_or_none()
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    check_open(meeting.status, meeting.opens_at, meeting.closes_at, received_at)
    digest = hashlib.sha256(payload).digest()
    signed = signed_by_holder(reader, pki, meeting, ballot.holder_no, payload, cms)
    holder = signed.holder
    agenda_rows = service.agenda_rows(reader, meeting.id or 0)
    agenda = service.agenda_of(agenda_rows)
    try:
        item_status = check_choices(ballot, agenda, nominee=holder.nominee,
                                    votable_shares=votable_shares(holder, agenda_rows))
    except BallotError as exc:
        raise _refuse(exc.code, str(exc)) from exc
    # Recording: the meeting row is locked, which orders the meeting's ballots and log.
    connection = session.connection()
    locked = connection.execute(_LOCK_MEETING, {"meeting_id": meeting.id}).one()
    if stamp_on_lock:  # received when its turn came: the order of the log is the order of receipt
        received_at = utcnow()
    check_open(locked.status, locked.opens_at, locked.closes_at, received_at)
    current = connection.execute(_HOLDER_NOW, {"meeting_id": meeting.id, "holder_no": ballot.holder_no}).first()
    if current is None or current.id != holder.id or current.id_hmac != signed.id_hmac:
        raise Conflict("the register changed while the ballot was checked: send it again", code="register_changed")
    ballot_sha256 = digest.hex()
    if connection.execute(_DUPLICATE, {"meeting_id": meeting.id, "ballot_sha256": ballot_sha256}).first():
        raise Conflict("this ballot was already received", code="duplicate_ballot")
    status = _status_on_arrival(session, meeting, holder)
    evidence = status_evidence(session, pki, signed.signer_serial, received_at)
    index, tree_head = ballot_log.append(
        session, pki, meeting_id=meeting.id or 0, meeting_public_id=meeting.public_id,
        entry=log_entry(meeting.public_id, holder.holder_no, ballot_sha256, hashlib.sha256(cms).hexdigest(),
                        received_at))
    connection.execute(_INSERT_BALLOT, {
        "meeting_id": meeting.id, "holder_id": holder.id, "ballot_sha256": ballot_sha256, "payload": payload,
        "cms": cms, "signer_serial": signed.signer_serial, "investor_reference": signed.investor_reference,
        "received_at": received_at, "status": status, "leaf_index": index, "revocation_evidence": evidence,
        "item_status": json.dumps({k: v for k, v in item_status.items() if v != "ok"})})
    if status == "counted":
        elections = {item.item_id for item in agenda if item.is_election}
        running.apply(session, meeting.id or 0, agenda, [running.CountedBallot(
            holder.holder_no, holder.shares - holder.non_voting_shares, holder.nominee,
            typed_choices(ballot.choices, elections), received_at)], sign=1)
    session.flush()
    audit.record(session, actor=f"investor:{signed.investor_reference}", tenant=meeting.issuer_code,
                 action="ballot.receive",
                 object_type="meeting", object_id=meeting.public_id,
                 details={"holder": holder.holder_no, "ballot_sha256": ballot_sha256, "status": status})
    statement = {"type": RECEIPT_TYPE, "meeting": meeting.public_id, "holder": holder.holder_no,
                 "ballot_sha256": ballot_sha256, "leaf_index": index,
                 "received_at": received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "status": status,
                 "tree_head": tree_head.to_json()}
    signature, serial = ballot_log.seal(session, pki, rfc8785.dumps(statement))
    return Receipt(statement, signature, serial, status)


def check_open(status: str, opens_at: dt.datetime, closes_at: dt.datetime, received_at: dt.datetime) -> None:
    """409 ``voting_not_open`` / ``voting_closed`` unless a ballot received at ``received_at`` is in the window."""
    if status != "published" or received_at < opens_at:
        raise Conflict("e-voting for this meeting is not open", code="voting_not_open")
    if received_at >= closes_at:
        raise Conflict("the e-voting deadline has passed", code="voting_closed")


def _status_on_arrival(session: Session, meeting: Meeting, holder: Holder) -> str:
    """``counted`` for the holder's first standing ballot; ``superseded`` after one;
    ``overridden_by_proxy`` when a proxy is registered. The meeting row is locked, so
    ballots of one meeting arrive one at a time; the partial unique index backs it up."""
    connection = session.connection()
    proxy = connection.execute(_PROXY, {"meeting_id": meeting.id, "holder_id": holder.id}).first()
    if proxy is not None:
        return "overridden_by_proxy"
    standing = connection.execute(_STANDING, {"meeting_id": meeting.id, "holder_id": holder.id}).first()
    return "superseded" if standing is not None else "counted"


def require_known_payload(payload_b64: str, cms_b64: str) -> tuple[bytes, bytes]:
    """Decode the base64 fields of a submission; 400 ``malformed_ballot`` otherwise."""
    try:
        return base64.b64decode(payload_b64, validate=True), base64.b64decode(cms_b64, validate=True)
    except ValueError as exc:
        raise BadRequest("payload and cms are base64", code="malformed_ballot") from exc



@dataclass(frozen=True)
class Confirmation:
    """What happened to a ballot: recorded (its log leaf and proof) and counted, or why not."""

    status: str
    holder_no: str
    received_at: dt.datetime
    leaf_index: int
    tree_size: int
    inclusion_proof: list[bytes]
    root_hash: bytes
    voided_items: dict[str, str]


def confirm_ballot(session: Session, *, meeting_public_id: str, ballot_sha256: str) -> Confirmation:
    """For the holder after the deadline: was the ballot recorded, and is it counted?

    Its status says why not (superseded, revoked, overridden_by_proxy) and the inclusion proof
    ties it to the newest sealed tree head. 409 ``tally_not_final`` until the tally is frozen
    (a proxy or a revocation can still change a status until then); 404 ``unknown_ballot``.
    """
    meeting = session.execute(select(Meeting).where(Meeting.public_id == meeting_public_id)).scalar_one_or_none()
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    if meeting.status != "frozen":
        raise Conflict("a ballot's status is final once the tally is frozen", code="tally_not_final")
    row = session.execute(select(BallotRow, Holder.holder_no).join(Holder, Holder.id == BallotRow.holder_id)
                          .where(BallotRow.meeting_id == meeting.id)
                          .where(BallotRow.ballot_sha256 == ballot_sha256.lower())).first()
    if row is None:
        raise NotFound("no such ballot in this meeting", code="unknown_ballot")
    ballot, holder_no = row
    head = ballot_log.latest_tree_head(session, meeting.id or 0)
    if head is None:  # every append seals a tree head: a logged ballot without one is damage
        raise ballot_log.IncompleteLog(f"meeting {meeting.public_id}: a ballot is logged but no tree head is")
    proof = ballot_log.inclusion_proof(session, meeting.id or 0, ballot.leaf_index, head.tree_size)
    return Confirmation(ballot.status, holder_no, ballot.received_at, ballot.leaf_index, head.tree_size, proof,
                        head.root_hash, json.loads(ballot.item_status))
