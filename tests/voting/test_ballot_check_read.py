"""A ballot's acceptance checks read everything in one statement, and judge by what it read
exactly as they would by asking each source in turn."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives import hashes
from sqlalchemy import event, update
from sqlmodel import Session

from ca.models import IssuedCertificate
from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from ra import credentials as ra_credentials
from signing.cms_parse import parse_detached_cms
from signing.evidence import DatabaseSignatureLog, platform_verifier, signing_time_key
from signing.revocation import CertificateRecord, DatabaseRevocation
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import code_of
from tests.voting.test_ballots import make_meeting, signed, submit, voter
from voting import ballots

RA_OFFICER = Actor("olivia", Role.RA_OFFICER, "B001")


@contextmanager
def counted_statements(platform: Platform) -> Iterator[list[str]]:
    """The SQL statements the checks' engine runs inside the block."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(platform.check_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(platform.check_engine, "before_cursor_execute", count)


def check(platform: Platform, payload: bytes, cms: bytes) -> ballots.CheckedBallot:
    with Session(platform.check_engine) as reader:  # as the intake reads
        return ballots.check_ballot(reader, platform.pki, payload=payload, cms=cms)


def test_a_good_ballot_is_checked_with_one_statement_on_every_backend(any_platform: Platform) -> None:
    meeting = make_meeting(any_platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(any_platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(any_platform, alice, meeting)
    check(any_platform, payload, cms)  # the CA certificates are loaded once per process
    with counted_statements(any_platform) as statements:
        checked = check(any_platform, payload, cms)
    assert len(statements) == 1, statements
    assert checked.holder.holder_no == "H001" and [item.item_id for item in checked.agenda] == ["1", "2", "3"]
    assert checked.signed.investor_reference.startswith("INV-")
    assert submit(any_platform, payload, cms).status == "counted"


def test_the_issuing_ca_revoked_in_the_cas_records_refuses_the_ballot(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    with session_scope(platform.engine) as session:
        issuing = platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))
        serial = format(issuing.serial_number, "x")
        session.execute(update(IssuedCertificate).where(IssuedCertificate.serial_hex == serial)
                        .values(status="revoked", revoked_at=utcnow() - dt.timedelta(minutes=5),
                                revocation_reason="cACompromise"))
    assert code_of(lambda: check(platform, payload, cms)) == "certificate_revoked"


def test_a_suspended_certificate_and_another_investors_certificate_are_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 10)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    bob = voter(platform, "H002", NATIONAL_IDS[1])
    assert code_of(lambda: check(platform, *signed(platform, bob, meeting, holder_no="H001"))) == "not_the_holder"
    assert code_of(lambda: check(platform, *signed(platform, alice, meeting, holder_no="H404"))) == "not_the_holder"
    payload, cms = signed(platform, alice, meeting)
    with session_scope(platform.engine) as session:
        ra_credentials.suspend_credential(session, platform.pki, actor=RA_OFFICER,
                                          credential=ra_credentials.get_credential(session, alice.credential_id))
    assert code_of(lambda: check(platform, payload, cms)) == "certificate_on_hold"


def test_an_unknown_meeting_is_refused_before_an_unreadable_signature(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, _ = signed(platform, alice, meeting)
    other = payload.replace(meeting.encode(), b"M" * len(meeting))
    assert code_of(lambda: check(platform, other, b"\x30\x03garbage")) == "unknown_meeting"
    assert code_of(lambda: check(platform, payload, b"\x30\x03garbage")) == "invalid_signature"


def test_what_was_read_ahead_gives_the_verdict_the_sources_give(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    parsed = parse_detached_cms(cms)
    signer = parsed.signer_certificate
    with Session(platform.check_engine) as session:
        issuing = platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))
        asked = DatabaseRevocation(lambda: _same(session))
        signed_at = platform_verifier(session, platform.pki).signature_log.signed_at(parsed)  # type: ignore[union-attr]
        assert signed_at is not None
        # Records read ahead are taken as they are: nothing is asked for their serials.
        record = CertificateRecord("good", None, None, signer.fingerprint(hashes.SHA256()).hex())
        known = DatabaseRevocation(lambda: _same(session), {format(signer.serial_number, "x"): record,
                                                            format(issuing.serial_number, "x"): None})
        with counted_statements(platform) as statements:
            assert known.status(signer, issuing) == asked.status(signer, issuing)
        assert len(statements) == 1  # only the source that was not told
        assert known.status(issuing, issuing).status == "unknown"  # read ahead as absent: not asked again
        for times in ({}, {signing_time_key(parsed): signed_at}):
            verifier = platform_verifier(session, platform.pki, known_signing_times=times)
            result = verifier.verify(cms, content=payload)
            assert result.valid and result.signing_time == signed_at


def test_the_read_ahead_signing_time_is_the_logs_and_reads_for_another_serial_are_not_used(
        platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    parsed = parse_detached_cms(cms)
    with Session(platform.check_engine) as reader:
        reads = ballots._read_for_check(reader, platform.pki, meeting, "H001", cms)
        logged = DatabaseSignatureLog(lambda: _same(reader)).signed_at(parsed)
        assert logged is not None and reads.known_signing_times == {signing_time_key(parsed): logged}
        # Reads made for another certificate: the holder and the investor are asked afresh.
        elsewhere = dataclasses.replace(reads, signer_serial="0", holder=None, signer=None)
        signer = ballots.signed_by_holder(reader, platform.pki, reads.meeting.id, "H001", payload, cms,
                                          reads=elsewhere)
    assert signer.holder.holder_no == "H001" and signer.signer_serial == format(
        parsed.signer_certificate.serial_number, "x")


@contextmanager
def _same(session: Session) -> Iterator[Session]:
    yield session
