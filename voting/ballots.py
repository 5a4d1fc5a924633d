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
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from ca.context import Pki
from ca.models import IssuedCertificate
from core import audit
from core.canonical import canonical_json
from core.db import utcnow
from core.direct_read import DirectSelect
from core.errors import AppError, BadRequest, Conflict, NotFound
from ra.models import Credential, Investor
from signing.cms_parse import CmsError, ParsedCms, parse_detached_cms
from signing.evidence import FIRST_SIGNED_AT, SigningTimeKey, platform_verifier, signing_time_key
from signing.revocation import CertificateRecord
from voting import ballot_log, running, service
from voting.agenda import AgendaItem, Choice
from voting.ballot import BallotError, check_choices, parse_ballot, typed_choices
from voting.evidence import status_evidence_many
from voting.log_records import log_entry
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Meeting

RECEIPT_TYPE = "cloudseal.receipt/1"
MAX_BALLOT_BYTES = 64 * 1024
MAX_CMS_BYTES = 32 * 1024
# Verifier reasons → the ballot error codes the app shows.
_SIGNATURE_CODES = {"revoked": "certificate_revoked", "on_hold": "certificate_on_hold",
                    "expired": "certificate_expired", "not_yet_valid": "certificate_not_yet_valid",
                    "untrusted_chain": "untrusted_certificate", "revocation_unknown": "certificate_status_unknown"}

# The statements of the ballot path are built once: constructing one costs more than running it.
# Column reads, not entities: the ORM's loading costs more than these lookups themselves.
_HOLDER = select(Holder.id, Holder.holder_no, Holder.shares, Holder.non_voting_shares, Holder.nominee,
                 Holder.id_hmac).where(Holder.meeting_id == bindparam("meeting_id")).where(
    Holder.holder_no == bindparam("holder_no"))
_LOCK_MEETING = (select(Meeting.status, Meeting.opens_at, Meeting.closes_at)
                 .where(Meeting.id == bindparam("meeting_id")).with_for_update())
# The recording's reads take every ballot of a group at once (expanding IN lists).
_HOLDERS_NOW = (select(Holder.holder_no, Holder.id, Holder.id_hmac).where(Holder.meeting_id == bindparam("meeting_id"))
                .where(Holder.holder_no.in_(bindparam("holder_nos", expanding=True))))  # type: ignore[attr-defined]
_DUPLICATES = (select(BallotRow.ballot_sha256).where(BallotRow.meeting_id == bindparam("meeting_id"))
               .where(BallotRow.ballot_sha256.in_(bindparam("shas", expanding=True))))  # type: ignore[attr-defined]
_PROXIES = (select(Attendance.holder_id).where(Attendance.meeting_id == bindparam("meeting_id"))
            .where(Attendance.holder_id.in_(bindparam("holder_ids", expanding=True)))  # type: ignore[union-attr]
            .where(Attendance.mode == "proxy"))
# By holder alone: a holder row belongs to one meeting, and filtering by meeting too let the
# planner pick the meeting's index and read every ballot of the meeting for each group.
_STANDING = (select(BallotRow.holder_id)
             .where(BallotRow.holder_id.in_(bindparam("holder_ids", expanding=True)))  # type: ignore[attr-defined]
             .where(BallotRow.status.in_(("counted", "superseded"))))  # type: ignore[attr-defined]
_INSERT_BALLOT = insert(BallotRow)

_SIGNER_CERT, _ISSUING_CERT = aliased(IssuedCertificate), aliased(IssuedCertificate)


def _record_columns(certificate: type[IssuedCertificate], prefix: str) -> tuple:
    return (certificate.status.label(f"{prefix}_status"), certificate.revoked_at.label(f"{prefix}_revoked_at"),
            certificate.revocation_reason.label(f"{prefix}_reason"),
            certificate.fingerprint_sha256.label(f"{prefix}_fingerprint"))


# The investor behind a certificate serial (the lowest credential id if several).
_SIGNER_INVESTOR = (select(Investor.reference, Investor.id_hmac)
                    .join(Credential, Credential.investor_id == Investor.id)
                    .where(Credential.certificate_serial == bindparam("serial"))
                    .order_by(Credential.id).limit(1))  # type: ignore[arg-type]
# A ballot's checks read in one statement, one row per agenda item: the meeting and its
# agenda, the holder the ballot names, the investor behind the signer's certificate, the CA's
# records of that certificate and of the issuing CA, and when the HSM signed (on PostgreSQL a
# round trip costs more than its query). It runs on the driver's cursor (core.direct_read):
# SQLAlchemy's execution of it cost more CPU than the rest of the read.
_CHECK_READ = DirectSelect(
    select(Meeting.id, Meeting.public_id, Meeting.issuer_code, Meeting.status, Meeting.opens_at, Meeting.closes_at,
           Holder.id.label("holder_id"),  # type: ignore[union-attr]
           Holder.holder_no, Holder.shares, Holder.non_voting_shares, Holder.nominee, Holder.id_hmac,
           _SIGNER_INVESTOR.with_only_columns(Investor.reference).scalar_subquery().label("signer_reference"),
           _SIGNER_INVESTOR.with_only_columns(Investor.id_hmac).scalar_subquery().label("signer_id_hmac"),
           *_record_columns(_SIGNER_CERT, "signer"), *_record_columns(_ISSUING_CERT, "issuing"),
           FIRST_SIGNED_AT.scalar_subquery().label("signed_at"), AgendaItemRow.item_key, AgendaItemRow.kind,
           AgendaItemRow.title, AgendaItemRow.seats, AgendaItemRow.candidates, AgendaItemRow.article)
    .select_from(Meeting)
    .outerjoin(Holder, (Holder.meeting_id == Meeting.id) & (Holder.holder_no == bindparam("holder_no")))
    .outerjoin(_SIGNER_CERT, _SIGNER_CERT.serial_hex == bindparam("serial"))
    .outerjoin(_ISSUING_CERT, _ISSUING_CERT.serial_hex == bindparam("ca_serial"))
    .outerjoin(AgendaItemRow, AgendaItemRow.meeting_id == Meeting.id)
    .where(Meeting.public_id == bindparam("public_id"))
    .order_by(AgendaItemRow.position)
)


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


def _signer_of(session: Session, serial: str) -> tuple[str, str] | None:
    """The investor reference and identity HMAC behind a certificate serial, if any."""
    row = session.connection().execute(_SIGNER_INVESTOR, {"serial": serial}).first()
    return None if row is None else (row.reference, row.id_hmac)


class RegisteredHolder(NamedTuple):
    """The register's line for a holder, as the checks and the recording read it."""

    id: int
    holder_no: str
    shares: int
    non_voting_shares: int
    nominee: bool
    id_hmac: str


@dataclass(frozen=True)
class SignedBy:
    """Who signed a submission (ballot or revocation): the registered holder and their certificate."""

    holder: RegisteredHolder
    signer_serial: str
    investor_reference: str
    id_hmac: str


class AgendaRow(NamedTuple):
    """An agenda item as stored, in the columns :func:`voting.service.agenda_of` reads."""

    item_key: str
    kind: str
    title: str
    seats: int
    candidates: str
    article: str | None


@functools.lru_cache(maxsize=256)
def _agenda(rows: tuple[AgendaRow, ...]) -> tuple[AgendaItem, ...]:
    # Remembered by the rows' values: every ballot of a meeting reads the same agenda, and
    # building its items (with their checks) cost more than reading it.
    return tuple(service.agenda_of(list(rows)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _CheckReads:
    """What :data:`_CHECK_READ` found for one ballot, in the forms the checks take."""

    meeting: Any  # the meeting's row (id, public_id, issuer_code, status, opens_at, closes_at), or None
    agenda_rows: list[Any]  # item_key, kind, title, seats, candidates, article; in agenda order
    signer_serial: str | None  # the certificate the rest was read for (None: the CMS did not parse)
    holder: RegisteredHolder | None
    signer: tuple[str, str] | None  # the certificate's investor: reference and identity HMAC
    known_records: dict[str, CertificateRecord | None]
    known_signing_times: dict[SigningTimeKey, dt.datetime | None]


def _read_for_check(reader: Session, pki: Pki, meeting_public_id: str, holder_no: str, cms: bytes) -> _CheckReads:
    """One statement for everything a ballot's checks read (see :data:`_CHECK_READ`)."""
    parsed: ParsedCms | None
    try:
        parsed = parse_detached_cms(cms)  # remembered: the verifier's own parse costs nothing more
    except CmsError:
        parsed = None  # the verifier refuses it in its turn, after the meeting's checks
    serial = None if parsed is None else format(parsed.signer_certificate.serial_number, "x")
    key = None if parsed is None else signing_time_key(parsed)
    ca_serial = format(pki.ca_certificate(pki.load_ca(reader, "issuing")).serial_number, "x")
    rows = _CHECK_READ.all(reader.connection(), {
        "public_id": meeting_public_id, "holder_no": holder_no, "serial": serial, "ca_serial": ca_serial,
        "digest": key[1] if key else None, "hash_algorithm": key[2] if key else None})
    row = rows[0] if rows else None
    agenda_rows = [r for r in rows if r.item_key is not None]
    if row is None or serial is None or key is None:
        return _CheckReads(row, agenda_rows, None, None, None, {}, {})
    records = {ca_serial: _record(row, "issuing"), serial: _record(row, "signer")}
    return _CheckReads(
        meeting=row, agenda_rows=agenda_rows, signer_serial=serial,
        holder=None if row.holder_id is None else RegisteredHolder(
            row.holder_id, row.holder_no, row.shares, row.non_voting_shares, row.nominee, row.id_hmac),
        signer=None if row.signer_reference is None else (row.signer_reference, row.signer_id_hmac),
        known_records=records, known_signing_times={key: row.signed_at})


def _record(row: Any, prefix: str) -> CertificateRecord | None:
    fingerprint = getattr(row, f"{prefix}_fingerprint")
    if fingerprint is None:
        return None  # no certificate under that serial
    return CertificateRecord(getattr(row, f"{prefix}_status"), getattr(row, f"{prefix}_revoked_at"),
                             getattr(row, f"{prefix}_reason"), fingerprint)


def signed_by_holder(reader: Session, pki: Pki, meeting_id: int, holder_no: str, payload: bytes,
                     cms: bytes, *, reads: _CheckReads | None = None) -> SignedBy:
    """The checks every signed submission passes: the CMS is valid over ``payload``, the
    certificate is good now, and its investor is the registered holder ``holder_no``.
    ``reads`` is what a ballot's single read already found for this meeting and holder."""
    records, times = (reads.known_records, reads.known_signing_times) if reads is not None else (None, None)
    result = platform_verifier(reader, pki, known_records=records, known_signing_times=times).verify(
        cms, digest=hashlib.sha256(payload).digest())
    if not result.valid:
        code = _SIGNATURE_CODES.get(result.reason or "", "invalid_signature")
        raise _refuse(code, result.message or "the signature is not valid")
    if result.status_now != "good" or result.signer is None:
        raise _refuse("certificate_not_good", "the signer's certificate is not good now")
    if reads is not None and reads.signer_serial == result.signer.serial:
        signer, holder = reads.signer, reads.holder
    else:
        signer = _signer_of(reader, result.signer.serial)
        found = reader.connection().execute(_HOLDER, {"meeting_id": meeting_id, "holder_no": holder_no}).first()
        holder = None if found is None else RegisteredHolder(*found)
    if signer is None:
        raise _refuse("not_the_holder", "the signer's certificate belongs to no investor here", 403)
    reference, id_hmac = signer
    if holder is None or holder.id_hmac != id_hmac:
        raise _refuse("not_the_holder", "the signer is not the registered holder named", 403)
    return SignedBy(holder, result.signer.serial, reference, id_hmac)


def votable_shares(holder: RegisteredHolder | Holder, agenda_rows: list) -> dict[str, int]:
    """The shares a holder votes on each agenda item (Art. 179), as ``check_choices`` takes them."""
    # Recusals (Art. 178) are applied by the tally, not by refusing the ballot: a recusal may
    # be entered after the holder voted, and the rest of the ballot counts either way.
    shares = holder.shares - holder.non_voting_shares
    return {row.item_key: shares for row in agenda_rows}


@dataclass(frozen=True)
class CheckedBallot:
    """A ballot that passed every check needing no lock, with what recording it takes."""

    meeting_id: int
    meeting_public_id: str
    issuer_code: str
    signed: SignedBy  # the certificate's investor and the registered holder they are
    payload: bytes
    cms: bytes
    ballot_sha256: str
    agenda: Sequence[AgendaItem]
    choices: dict[str, Choice]  # typed, as the running totals count them
    item_status: dict[str, str]  # the items voided on this ballot, and why
    received_at: dt.datetime | None  # None: stamped when its turn comes under the meeting's lock

    @property
    def holder(self) -> RegisteredHolder:
        """The registered holder who signed the ballot."""
        return self.signed.holder


def submit_ballot(session: Session, pki: Pki, *, payload: bytes, cms: bytes, meeting_public_id: str | None = None,
                  received_at: dt.datetime | None = None, reader: Session | None = None) -> Receipt:
    """Check, store, log and seal a receipt for one signed ballot (see the module docstring).

    ``meeting_public_id`` is the meeting the ballot was sent to: a ballot signed for another
    meeting is refused (``meeting_mismatch``), so none can be replayed elsewhere. The checks
    read through ``reader`` (default ``session``); only the recording locks the meeting, so
    on SQLite the write lock is not held while the CMS is verified.
    """
    checked = check_ballot(reader or session, pki, payload=payload, cms=cms, meeting_public_id=meeting_public_id,
                           received_at=received_at)
    outcome = record_ballots(session, pki, [checked])[0]
    if isinstance(outcome, AppError):
        raise outcome
    return outcome


def check_ballot(reader: Session, pki: Pki, *, payload: bytes, cms: bytes, meeting_public_id: str | None = None,
                 received_at: dt.datetime | None = None) -> CheckedBallot:
    """Every acceptance check that needs no lock (size, form, meeting, signature, holder,
    choices); raises the refusal's :class:`AppError`. ``received_at`` fixes the moment of
    receipt (by default it is stamped under the meeting's lock, in log order)."""
    if len(payload) > MAX_BALLOT_BYTES or len(cms) > MAX_CMS_BYTES:
        raise _refuse("ballot_too_large", "the ballot or its signature is too large", 413)
    try:
        ballot = parse_ballot(payload)
    except BallotError as exc:
        raise _refuse(exc.code, str(exc)) from exc
    if meeting_public_id is not None and ballot.meeting_id != meeting_public_id:
        raise _refuse("meeting_mismatch", "the ballot was signed for another meeting")
    reads = _read_for_check(reader, pki, ballot.meeting_id, ballot.holder_no, cms)
    meeting = reads.meeting
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    check_open(meeting.status, meeting.opens_at, meeting.closes_at, received_at or utcnow())
    signed = signed_by_holder(reader, pki, meeting.id, ballot.holder_no, payload, cms, reads=reads)
    holder = signed.holder
    agenda_rows = reads.agenda_rows
    agenda = _agenda(tuple(AgendaRow(r.item_key, r.kind, r.title, r.seats, r.candidates, r.article)
                           for r in agenda_rows))
    try:
        item_status = check_choices(ballot, agenda, nominee=holder.nominee,
                                    votable_shares=votable_shares(holder, agenda_rows))
    except BallotError as exc:
        raise _refuse(exc.code, str(exc)) from exc
    elections = {item.item_id for item in agenda if item.is_election}
    return CheckedBallot(
        meeting_id=meeting.id, meeting_public_id=meeting.public_id, issuer_code=meeting.issuer_code,
        signed=signed, payload=payload, cms=cms, ballot_sha256=hashlib.sha256(payload).hexdigest(),
        agenda=agenda, choices=typed_choices(ballot.choices, elections),
        item_status={k: v for k, v in item_status.items() if v != "ok"}, received_at=received_at)


@dataclass
class _Accepted:
    position: int
    checked: CheckedBallot
    received_at: dt.datetime
    status: str


def record_ballots(session: Session, pki: Pki, checked: Sequence[CheckedBallot]) -> list[Receipt | AppError]:
    """Record checked ballots in the order given, in the caller's transaction: each gets its
    sealed receipt, or the refusal found under the lock (deadline passed, duplicate, the
    register changed), without holding the others back.

    Each meeting's row is locked (meetings in id order, so two recorders never deadlock),
    which orders its ballots and log; the first-received rule is applied ballot by ballot,
    counting those earlier in the same group. The reads, inserts, log append, running totals
    and audit entries are one statement each per meeting, whatever the group's size.
    """
    outcomes: list[Receipt | AppError | None] = [None] * len(checked)
    by_meeting: dict[int, list[int]] = {}
    for position, ballot in enumerate(checked):
        by_meeting.setdefault(ballot.meeting_id, []).append(position)
    received: list[_Accepted] = []
    for meeting_id in sorted(by_meeting):
        group = [(position, checked[position]) for position in by_meeting[meeting_id]]
        accepted = _admit(session, meeting_id, group, outcomes)
        for position, receipt in _store(session, pki, meeting_id, accepted):
            outcomes[position] = receipt
        received.extend(accepted)
    # The audit head is locked last, after every meeting, as the single-ballot paths do: two
    # recorders never wait on each other in opposite orders.
    audit.record_many(session, [audit.AuditEntry(
        actor=f"investor:{a.checked.signed.investor_reference}", tenant=a.checked.issuer_code,
        action="ballot.receive", object_type="meeting", object_id=a.checked.meeting_public_id,
        details={"holder": a.checked.holder.holder_no, "ballot_sha256": a.checked.ballot_sha256, "status": a.status})
        for a in sorted(received, key=lambda a: a.position)])
    assert all(outcome is not None for outcome in outcomes), "every ballot is received or refused"
    return outcomes  # type: ignore[return-value]


def _admit(session: Session, meeting_id: int, group: list[tuple[int, CheckedBallot]],
           outcomes: list[Receipt | AppError | None]) -> list[_Accepted]:
    """Lock the meeting and decide, in order, which ballots are received and with what status."""
    connection = session.connection()
    locked = connection.execute(_LOCK_MEETING, {"meeting_id": meeting_id}).one()
    holder_nos = sorted({ballot.holder.holder_no for _, ballot in group})
    holder_ids = sorted({ballot.holder.id or 0 for _, ballot in group})
    current = {row.holder_no: row for row in connection.execute(
        _HOLDERS_NOW, {"meeting_id": meeting_id, "holder_nos": holder_nos})}
    proxies = set(connection.execute(_PROXIES, {"meeting_id": meeting_id, "holder_ids": holder_ids}).scalars())
    standing = set(connection.execute(_STANDING, {"holder_ids": holder_ids}).scalars())
    known = set(connection.execute(_DUPLICATES, {
        "meeting_id": meeting_id, "shas": sorted({ballot.ballot_sha256 for _, ballot in group})}).scalars())
    accepted = []
    for position, ballot in group:
        # Received when its turn came: the order of the log is the order of receipt.
        received_at = ballot.received_at or utcnow()
        try:
            check_open(locked.status, locked.opens_at, locked.closes_at, received_at)
            now = current.get(ballot.holder.holder_no)
            if now is None or now.id != ballot.holder.id or now.id_hmac != ballot.signed.id_hmac:
                raise Conflict("the register changed while the ballot was checked: send it again",
                               code="register_changed")
            if ballot.ballot_sha256 in known:
                raise Conflict("this ballot was already received", code="duplicate_ballot")
        except AppError as refusal:
            outcomes[position] = refusal
            continue
        known.add(ballot.ballot_sha256)
        # Art. 177-2: the holder's first standing ballot counts; a registered proxy overrides
        # the e-vote. The partial unique index on counted ballots backs this up.
        if ballot.holder.id in proxies:
            status = "overridden_by_proxy"
        else:
            status = "superseded" if ballot.holder.id in standing else "counted"
            standing.add(ballot.holder.id)
        accepted.append(_Accepted(position, ballot, received_at, status))
    return accepted


def _store(session: Session, pki: Pki, meeting_id: int, accepted: list[_Accepted]) -> list[tuple[int, Receipt]]:
    """Log, store and count the accepted ballots of one meeting; seal their receipts."""
    if not accepted:
        return []
    connection = session.connection()
    first = accepted[0].checked
    evidence = status_evidence_many(session, pki, [(a.checked.signed.signer_serial, a.received_at)
                                                   for a in accepted])
    logged = ballot_log.append_many(session, pki, meeting_id=meeting_id, meeting_public_id=first.meeting_public_id,
                                    entries=[log_entry(first.meeting_public_id, a.checked.holder.holder_no,
                                                       a.checked.ballot_sha256,
                                                       hashlib.sha256(a.checked.cms).hexdigest(), a.received_at)
                                             for a in accepted])
    connection.execute(_INSERT_BALLOT, [{
        "meeting_id": meeting_id, "holder_id": a.checked.holder.id, "ballot_sha256": a.checked.ballot_sha256,
        "payload": a.checked.payload, "cms": a.checked.cms, "signer_serial": a.checked.signed.signer_serial,
        "investor_reference": a.checked.signed.investor_reference, "received_at": a.received_at,
        "status": a.status, "leaf_index": index, "revocation_evidence": proof,
        "item_status": json.dumps(a.checked.item_status)} for a, (index, _), proof in zip(accepted, logged, evidence)])
    counted = [a for a in accepted if a.status == "counted"]
    if counted:
        running.apply(session, meeting_id, first.agenda, [running.CountedBallot(
            a.checked.holder.holder_no, a.checked.holder.shares - a.checked.holder.non_voting_shares,
            a.checked.holder.nominee, a.checked.choices, a.received_at) for a in counted], sign=1)
    receipts = []
    for a, (index, tree_head) in zip(accepted, logged):
        statement = {"type": RECEIPT_TYPE, "meeting": first.meeting_public_id, "holder": a.checked.holder.holder_no,
                     "ballot_sha256": a.checked.ballot_sha256, "leaf_index": index,
                     "received_at": a.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "status": a.status,
                     "tree_head": tree_head.to_json()}
        signature, serial = ballot_log.seal(session, pki, canonical_json(statement))
        receipts.append((a.position, Receipt(statement, signature, serial, a.status)))
    return receipts


def check_open(status: str, opens_at: dt.datetime, closes_at: dt.datetime, received_at: dt.datetime) -> None:
    """409 ``voting_not_open`` / ``voting_closed`` unless a ballot received at ``received_at`` is in the window."""
    if status != "published" or received_at < opens_at:
        raise Conflict("e-voting for this meeting is not open", code="voting_not_open")
    if received_at >= closes_at:
        raise Conflict("the e-voting deadline has passed", code="voting_closed")


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
