"""The auditor bundle of a frozen meeting: everything needed to re-verify it offline.

``cloudseal audit verify BUNDLE --root root.crt`` (:mod:`voting.audit_verify`) re-checks a
bundle with nothing but the platform's root certificate, recomputing every figure from the
signed ballots. This docstring is the format's public contract (``cloudseal.audit-bundle/1``).

One ZIP archive (deflate, ZIP64) holding:

``manifest.json``
    RFC 8785 JSON: ``format``; ``meeting`` (``public_id``, ``title``, ``issuer`` {code, name},
    ``meeting_date``, ``book_closure_date``, ``notice_published_on``, the e-voting window
    ``opens_at``/``closes_at`` (``closes_at`` exclusive), ``frozen_at``, ``register_sha256``
    (the digest of the imported register file), ``register_holders``); ``rules``
    (``public_company`` and the stricter ``thresholds`` of the articles, fractions such as
    ``"2/3"`` or ``">1/2"``); ``agenda`` in order (``key``, ``kind``, ``title``, ``article``,
    ``seats``, ``candidates`` [{key, name}], ``added_at``); ``counts``; ``sealed_at``; and
    ``files``: the SHA-256 and size of every other member except ``manifest.sig``.
``manifest.sig``
    ``{"type": "cloudseal.manifest-seal/1", "seal_serial": hex, "signature": base64}``: the
    platform seal's ECDSA P-256 signature (DER) over SHA-256 of ``manifest.json``'s bytes.
    Through it the platform vouches for the register, the host's entries and the frozen
    tally, which nobody else signed.
``register.jsonl``
    One holder per line: ``holder``, ``shares``, ``non_voting_shares`` (decimal strings),
    ``nominee`` and ``investor``: the investor reference (their certificates' subject
    serialNumber) the platform matched to the holder by the keyed identity hash, or null. No
    names and no identity numbers.
``ballots.jsonl``
    Every ballot in log order: ``leaf_index``, ``holder``, ``received_at`` (UTC, microseconds,
    ``Z``), ``status`` (counted, superseded, revoked, overridden_by_proxy), ``payload`` and
    ``cms`` (base64: the canonical ballot and its detached CAdES-BES signature, as received),
    ``ocsp_sha256`` (the OCSP response about the signer current at receipt, or null when the
    platform had none) and ``voided_items`` (elections void on this ballot).
``revocations.jsonl``
    Every revocation in log order: ``leaf_index``, ``holder``, ``received_at``, ``payload``,
    ``cms``, ``revoked`` (SHA-256 of the revoked ballots' payloads, in log order) and
    ``ocsp_sha256``. Revocations received before the log recorded them have a null
    ``leaf_index`` and come last.
``ocsp-responses.jsonl``
    Each OCSP response the records name, once: ``sha256`` and ``der`` (base64).
``tree-heads.jsonl``
    Every signed tree head in size order: ``tree_size``, ``root_hash``, ``issued_at``,
    ``signature`` (base64 DER ECDSA over :func:`voting.log_records.tree_head_statement`) and
    ``seal_serial``.
``certificates/root.pem``, ``issuing-ca.pem``, ``ocsp-signers.pem``, ``seals.pem``, ``investors.pem``
    PEM: the root (for reference: a verifier trusts only the root it is given), the issuing
    CA, every OCSP signer and platform seal certificate, and the certificates of the
    investors who signed a ballot or revocation (each CMS carries its own as well).
``crls/{ca}-{number}.crl``
    DER CRLs of the root and the issuing CA whose validity overlaps the meeting's period
    (e-voting window to freezing).
``room.json``
    The host's entries: ``attendance`` [{holder, mode (in_person or proxy), choices,
    entered_at}], ``recusals`` [{item, holder}], ``items_added_at_meeting`` [keys]. Proxies'
    names and recusal reasons are left out.
``tally.json``
    The frozen tally exactly as frozen (JSON of :meth:`voting.tally.TallyResult.as_dict`).

Leaves are recomputed from the records: a ballot's entry is
:func:`voting.log_records.log_entry` (meeting, holder, SHA-256 of payload and of CMS,
received_at), a revocation's :func:`voting.log_records.revocation_log_entry`, and the leaf
is SHA-256(0x00 || entry) (RFC 9162).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select
from sqlmodel import Session

from ca.context import Pki
from ca.models import CertificateAuthority, CrlRecord, IssuedCertificate
from ca.profiles import OCSP_SIGNER, PLATFORM_SEAL
from core.auth import Actor
from core.db import utcnow
from core.errors import Conflict, NotFound
from ra.models import Investor
from signing.cms_parse import CmsError, parse_detached_cms
from voting import ballot_log, bundle_format as fmt, service
from voting.access import READ_ROLES, visible_meeting
from voting.agenda import NOT_ELECTRONICALLY_VOTABLE
from voting.log_records import log_time, tree_head_statement
from voting.models import (AgendaItemRow, Attendance, BallotRevocation, BallotRow, Holder, Issuer, Meeting, Recusal,
                           RunningTally, TreeHead)

CHUNK_ROWS = 2000
Progress = Callable[[str, int, int], None]


def bundle_meeting(session: Session, actor: Actor, meeting_id: int) -> Meeting:
    """The meeting whose bundle the caller may download: hosts of its issuer, operators,
    auditors. 404 ``unknown_meeting``; 409 ``meeting_not_frozen`` until the tally is frozen."""
    meeting = visible_meeting(session, actor, meeting_id, roles=READ_ROLES)
    return _frozen(meeting)


def meeting_by_public_id(session: Session, public_id: str) -> Meeting:
    """A frozen meeting by its public id (the CLI's way): 404 ``unknown_meeting``, 409 ``meeting_not_frozen``."""
    meeting = session.execute(select(Meeting).where(Meeting.public_id == public_id)).scalar_one_or_none()
    if meeting is None or meeting.status == "draft":
        raise NotFound("no such meeting", code="unknown_meeting")
    return _frozen(meeting)


def _frozen(meeting: Meeting) -> Meeting:
    if meeting.status != "frozen":
        raise Conflict("the auditor bundle exists once the tally is frozen", code="meeting_not_frozen")
    return meeting


def build_bundle(session: Session, pki: Pki, meeting: Meeting) -> bytes:
    """The bundle of a frozen meeting as bytes (see :func:`write_bundle` for big meetings)."""
    with tempfile.TemporaryFile() as out:
        write_bundle(session, pki, meeting, out)
        out.seek(0)
        return out.read()


def bundle_file(session: Session, pki: Pki, meeting: Meeting) -> IO[bytes]:
    """The bundle written to an anonymous temporary file, rewound (it disappears when closed)."""
    out = tempfile.TemporaryFile()
    try:
        write_bundle(session, pki, meeting, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def iter_file(stream: IO[bytes], chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """``stream``'s bytes in chunks, closing it at the end (a streaming response's body)."""
    with stream:
        while chunk := stream.read(chunk_size):
            yield chunk


def write_bundle(session: Session, pki: Pki, meeting: Meeting, out: BinaryIO | str | Path, *,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Write the bundle of a frozen ``meeting`` to ``out`` (a path or a binary stream) and
    return its manifest. Rows are read in chunks, so memory stays flat whatever the size;
    ``progress(step, done, total)`` is called as ballots and tree heads are written."""
    _frozen(meeting)
    meeting_id = meeting.id or 0
    writer = fmt.BundleWriter(out)
    try:
        counts = {"holders": _write_register(session, writer, meeting_id)}
        signers: set[str] = set()
        counts["ballots"] = _write_ballots(session, writer, meeting, signers, progress)
        counts["revocations"] = _write_revocations(session, writer, meeting_id, signers)
        counts["tree_heads"] = _write_tree_heads(session, writer, meeting, progress)
        counts["log_size"] = ballot_log.log_size(session, meeting_id)
        counts["signers"] = len(signers)
        counts["crls"] = write_pki(session, writer, meeting, signers)
        writer.add_json(fmt.ROOM, _room(session, meeting_id))
        tally = session.get(RunningTally, meeting_id)
        writer.add(fmt.TALLY, (tally.frozen_tally if tally and tally.frozen_tally else "{}").encode())
        manifest = {"meeting": meeting_json(session, meeting), "agenda": agenda_json(session, meeting_id),
                    "rules": {"public_company": meeting.public_company,
                              "thresholds": json.loads(meeting.thresholds or "{}")},
                    "counts": counts}
        return writer.finish(manifest, lambda data: ballot_log.seal(session, pki, data), utcnow())
    except BaseException:
        writer.abort()
        raise


def meeting_json(session: Session, meeting: Meeting) -> dict[str, Any]:
    """The ``meeting`` object of the manifest."""
    issuer = session.get(Issuer, meeting.issuer_code)
    return {"public_id": meeting.public_id, "title": meeting.title,
            "issuer": {"code": meeting.issuer_code, "name": issuer.name if issuer else ""},
            "meeting_date": meeting.meeting_date.isoformat(), "book_closure_date": meeting.book_closure_date.isoformat(),
            "notice_published_on": meeting.notice_published_on.isoformat(), "opens_at": log_time(meeting.opens_at),
            "closes_at": log_time(meeting.closes_at),
            "frozen_at": log_time(meeting.frozen_at) if meeting.frozen_at else None,
            "register_sha256": meeting.register_sha256, "register_holders": meeting.register_holders}


def agenda_json(session: Session, meeting_id: int) -> list[dict[str, Any]]:
    """The ``agenda`` of the manifest, in order."""
    return [{"key": r.item_key, "kind": r.kind, "title": r.title, "article": r.article, "seats": r.seats,
             "candidates": json.loads(r.candidates), "added_at": log_time(r.added_at)}
            for r in service.agenda_rows(session, meeting_id)]


def _write_register(session: Session, writer: fmt.BundleWriter, meeting_id: int) -> int:
    rows = session.execute(select(Holder.holder_no, Holder.shares, Holder.non_voting_shares, Holder.nominee,
                                  Investor.reference)
                           .outerjoin(Investor, Investor.id_hmac == Holder.id_hmac)
                           .where(Holder.meeting_id == meeting_id).order_by(Holder.holder_no)
                           .execution_options(yield_per=CHUNK_ROWS))
    with writer.lines(fmt.REGISTER) as lines:
        for row in rows:
            lines.record(fmt.holder_record(row.holder_no, row.shares, row.non_voting_shares, row.nominee,
                                           row.reference))
    return lines.lines


def _write_ballots(session: Session, writer: fmt.BundleWriter, meeting: Meeting, signers: set[str],
                   progress: Progress | None) -> int:
    total = session.execute(select(func.count()).where(BallotRow.meeting_id == meeting.id)).scalar_one()
    statement = (select(BallotRow.leaf_index, Holder.holder_no, BallotRow.received_at, BallotRow.status,
                        BallotRow.payload, BallotRow.cms, BallotRow.revocation_evidence, BallotRow.item_status,
                        BallotRow.signer_serial)
                 .join(Holder, Holder.id == BallotRow.holder_id).where(BallotRow.meeting_id == meeting.id)
                 .order_by(BallotRow.leaf_index).limit(CHUNK_ROWS))
    after = -1
    with writer.lines(fmt.BALLOTS) as lines:
        while rows := session.execute(statement.where(BallotRow.leaf_index > after)).all():
            for row in rows:
                signers.add(row.signer_serial)
                lines.record(fmt.ballot_record(
                    leaf_index=row.leaf_index, holder_no=row.holder_no, received_at=row.received_at,
                    status=row.status, payload=row.payload, cms=row.cms,
                    ocsp_sha256=writer.add_ocsp(row.revocation_evidence), voided_items=json.loads(row.item_status)))
            after = rows[-1].leaf_index
            if progress:
                progress("ballots", lines.lines, total)
    return lines.lines


def _signer_serial(cms: bytes) -> set[str]:
    """The signer certificate's serial (hex) of a stored CMS; none for a CMS that does not
    parse (it is written as received, and the verifier reports it)."""
    try:
        return {format(parse_detached_cms(cms).signer_certificate.serial_number, "x")}
    except CmsError:
        return set()


def _write_revocations(session: Session, writer: fmt.BundleWriter, meeting_id: int, signers: set[str]) -> int:
    rows = session.execute(
        select(BallotRevocation, BallotRow.ballot_sha256, Holder.holder_no)
        .join(BallotRow, BallotRow.id == BallotRevocation.ballot_id).join(Holder, Holder.id == BallotRevocation.holder_id)
        .where(BallotRevocation.meeting_id == meeting_id).order_by(BallotRow.leaf_index)).all()
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:  # one row per revoked ballot: one record per revocation
        grouped[row.BallotRevocation.payload_sha256 or fmt.sha256_hex(row.BallotRevocation.payload)].append(row)
    ordered = sorted(grouped.values(), key=lambda group: (group[0].BallotRevocation.leaf_index is None,
                                                           group[0].BallotRevocation.leaf_index or 0))
    with writer.lines(fmt.REVOCATIONS) as lines:
        for group in ordered:
            revocation = group[0].BallotRevocation
            signers.update(_signer_serial(revocation.cms))
            lines.record(fmt.revocation_record(
                leaf_index=revocation.leaf_index, holder_no=group[0].holder_no, received_at=revocation.received_at,
                payload=revocation.payload, cms=revocation.cms, revoked=[row.ballot_sha256 for row in group],
                ocsp_sha256=writer.add_ocsp(revocation.revocation_evidence)))
    return lines.lines


def _seal_certificates(session: Session) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der) for der in session.execute(
        select(IssuedCertificate.der).where(IssuedCertificate.profile == PLATFORM_SEAL.name)
        .order_by(IssuedCertificate.not_before)).scalars()]


def _write_tree_heads(session: Session, writer: fmt.BundleWriter, meeting: Meeting, progress: Progress | None) -> int:
    seals = _seal_certificates(session)
    serial = _SealFinder(seals, meeting.public_id)
    statement = (select(TreeHead.tree_size, TreeHead.root_hash, TreeHead.issued_at, TreeHead.signature)
                 .where(TreeHead.meeting_id == meeting.id).order_by(TreeHead.tree_size).limit(CHUNK_ROWS))
    after = 0
    with writer.lines(fmt.TREE_HEADS) as lines:
        while rows := session.execute(statement.where(TreeHead.tree_size > after)).all():
            for row in rows:
                lines.record(fmt.tree_head_record(tree_size=row.tree_size, root_hash=row.root_hash,
                                                  issued_at=row.issued_at, signature=row.signature,
                                                  seal_serial=serial.of(row)))
            after = rows[-1].tree_size
            if progress:
                progress("tree heads", lines.lines, lines.lines)
    return lines.lines


class _SealFinder:
    """Which platform seal signed a tree head (the table does not say): with one seal, that
    one; with several, the one whose key verifies, trying the last one found first."""

    def __init__(self, seals: list[x509.Certificate], meeting: str) -> None:
        self._seals, self._meeting = seals, meeting
        self._last = seals[-1] if seals else None

    def of(self, row: Any) -> str:
        if len(self._seals) <= 1:
            return format(self._seals[0].serial_number, "x") if self._seals else ""
        data = tree_head_statement(self._meeting, row.tree_size, row.root_hash, row.issued_at)
        for seal in sorted(self._seals, key=lambda s: s is not self._last):
            try:
                seal.public_key().verify(row.signature, data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, arg-type]
            except (InvalidSignature, TypeError, ValueError):
                continue
            self._last = seal
            return format(seal.serial_number, "x")
        return format(self._last.serial_number, "x") if self._last else ""


def _pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def write_pki(session: Session, writer: fmt.BundleWriter, meeting: Meeting, signers: set[str]) -> int:
    """Write the PKI the verifier needs (CA, OCSP signer and seal certificates, the CRLs of the
    meeting's period) and the certificates of ``signers`` (serials); return the number of CRLs."""
    cas = {row.name: x509.load_der_x509_certificate(row.certificate_der)
           for row in session.execute(select(CertificateAuthority)).scalars()}
    writer.add(fmt.ROOT_PEM, _pem([cas["root"]] if "root" in cas else []))
    writer.add(fmt.ISSUING_PEM, _pem([c for name, c in cas.items() if name != "root"]))
    signer_certs = [x509.load_der_x509_certificate(der) for der in session.execute(
        select(IssuedCertificate.der).where(IssuedCertificate.profile == OCSP_SIGNER.name)
        .order_by(IssuedCertificate.not_before)).scalars()]
    writer.add(fmt.OCSP_SIGNERS_PEM, _pem(signer_certs))
    writer.add(fmt.SEALS_PEM, _pem(_seal_certificates(session)))
    investors: list[x509.Certificate] = []
    serials = sorted(signers)
    for start in range(0, len(serials), 500):
        investors += [x509.load_der_x509_certificate(der) for der in session.execute(
            select(IssuedCertificate.der).where(IssuedCertificate.serial_hex.in_(serials[start:start + 500]))  # type: ignore[attr-defined]
            .order_by(IssuedCertificate.serial_hex)).scalars()]
    writer.add(fmt.INVESTORS_PEM, _pem(investors))
    until = meeting.frozen_at or utcnow()
    crls = session.execute(select(CrlRecord).where(CrlRecord.this_update <= until)
                           .where(CrlRecord.next_update > meeting.opens_at)
                           .order_by(CrlRecord.ca_name, CrlRecord.crl_number)).scalars().all()
    for crl in crls:
        writer.add(fmt.crl_name(crl.ca_name, crl.crl_number), crl.der)
    return len(crls)


def _room(session: Session, meeting_id: int) -> dict[str, Any]:
    attendance = [{"holder": holder_no, "mode": row.mode, "choices": json.loads(row.choices),
                   "entered_at": log_time(row.entered_at)}
                  for row, holder_no in session.execute(
                      select(Attendance, Holder.holder_no).join(Holder, Holder.id == Attendance.holder_id)
                      .where(Attendance.meeting_id == meeting_id).order_by(Holder.holder_no))]
    recusals = [{"item": item_key, "holder": holder_no} for item_key, holder_no in session.execute(
        select(AgendaItemRow.item_key, Holder.holder_no).join(Recusal, Recusal.item_id == AgendaItemRow.id)
        .join(Holder, Holder.id == Recusal.holder_id).where(AgendaItemRow.meeting_id == meeting_id)
        .order_by(AgendaItemRow.position, Holder.holder_no))]
    added = [r.item_key for r in service.agenda_rows(session, meeting_id) if r.kind in NOT_ELECTRONICALLY_VOTABLE]
    return {"attendance": attendance, "recusals": recusals, "items_added_at_meeting": added}
