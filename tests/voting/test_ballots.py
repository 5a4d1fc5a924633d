"""Receiving signed ballots: acceptance checks, the first-received rule, the log and receipts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlmodel import Session

from ca.bootstrap import current_seal
from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from core.errors import AppError
from ra import devices
from ra import secrets as ra_secrets
from signing import service as signing
from tests.ra.factories import NATIONAL_IDS, Phone
from tests.ra.service_flow import activated
from voting import ballot_log, ballots, merkle, service
from voting.ballot import build_ballot, new_nonce
from voting.calendar import TAIPEI
from voting.models import BallotRow, Holder
from voting.service import AgendaItemIn, CandidateIn

OPERATOR = Actor("ops", Role.OPERATOR)
HOST = Actor("hana", Role.ISSUER_HOST, "2330")
ITEMS = [AgendaItemIn("1", "acknowledgement", "2025 business report"),
         AgendaItemIn("2", "special", "Amend the articles", article="277"),
         AgendaItemIn("3", "election", "Directors", seats=2,
                      candidates=(CandidateIn("C1", "Lin"), CandidateIn("C2", "Chen"), CandidateIn("C3", "Wang")))]
CHOICES = {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 1000, "C2": 1000}}}


@dataclass
class Voter:
    holder_no: str
    credential_id: str
    phone: Phone


def make_meeting(platform: Platform, holders: list[tuple[str, str, int]], *, issuer: str = "2330",
                 held_yesterday: bool = False, items: list[AgendaItemIn] | None = None, title: str = "2026 AGM",
                 issuer_name: str | None = None) -> str:
    """A published meeting whose e-voting window is open now (or, ``held_yesterday``, closed
    and the meeting under way); returns its public id. ``items`` default to ``ITEMS``."""
    today = dt.datetime.now(TAIPEI).date() - (dt.timedelta(days=11) if held_yesterday else dt.timedelta())
    with session_scope(platform.engine) as session:
        if not service.list_issuers(session, OPERATOR) or issuer not in {i.code for i in service.list_issuers(
                session, OPERATOR)}:
            service.create_issuer(session, actor=OPERATOR, code=issuer, name=issuer_name or f"Issuer {issuer}")
        meeting = service.create_meeting(
            session, actor=Actor("hana", Role.ISSUER_HOST, issuer), issuer_code=issuer, title=title,
            meeting_date=today + dt.timedelta(days=10), book_closure_date=today - dt.timedelta(days=2),
            notice_published_on=today - dt.timedelta(days=5), public_company=True, items=items or ITEMS)
        for holder_no, id_number, shares in holders:
            session.add(Holder(meeting_id=meeting.id or 0, holder_no=holder_no, name=holder_no, shares=shares,
                               non_voting_shares=0,
                               id_hmac=ra_secrets.identity_hmac(platform.keystore, "national_id", id_number)))
        meeting.register_sha256, meeting.register_holders = "0" * 64, len(holders)
        session.add(meeting)
        session.flush()
        service.publish_meeting(session, actor=OPERATOR, meeting_id=meeting.id or 0)
        return meeting.public_id


def voter(platform: Platform, holder_no: str, id_number: str) -> Voter:
    credential_id, phone = activated(platform, id_number=id_number)
    return Voter(holder_no, credential_id, phone)


def signed(platform: Platform, who: Voter, meeting: str, choices: dict | None = None, *,
           holder_no: str | None = None) -> tuple[bytes, bytes]:
    """The app's way: canonical ballot bytes, signed as a detached CMS through /signing/cms's service."""
    payload = build_ballot(meeting, holder_no or who.holder_no, choices or CHOICES, new_nonce(), utcnow())
    return payload, sign_payload(platform, who, payload)


def sign_payload(platform: Platform, who: Voter, payload: bytes) -> bytes:
    """A detached CMS over ``payload`` by ``who``, through the signing service (PIN + device proof)."""
    digest = hashlib.sha256(payload).digest()
    with session_scope(platform.engine) as session:
        challenge = devices.issue_challenge(session, who.credential_id)
    message = devices.challenge_message(challenge.id, challenge.nonce,
                                        signing.authorization_action("sha256", [digest]), who.credential_id)
    with session_scope(platform.engine) as session:
        return signing.sign_cms(session, platform.pki, credential_id=who.credential_id, pin="482916", digest=digest,
                                hash_algorithm="sha256", client="voting-app", purpose="ballot",
                                challenge_id=challenge.id, device_signature=who.phone.sign(message))


def submit(platform: Platform, payload: bytes, cms: bytes, **kw: object) -> ballots.Receipt:
    with session_scope(platform.engine) as session:
        return ballots.submit_ballot(session, platform.pki, payload=payload, cms=cms, **kw)  # type: ignore[arg-type]


def refusal(platform: Platform, payload: bytes, cms: bytes, **kw: object) -> str:
    try:
        submit(platform, payload, cms, **kw)
    except AppError as exc:
        return exc.code
    return "accepted"


def test_a_signed_ballot_is_accepted_logged_and_gets_a_sealed_receipt(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    receipt = submit(platform, payload, cms)
    assert receipt.status == "counted"
    statement = receipt.statement
    assert statement["ballot_sha256"] == hashlib.sha256(payload).hexdigest() and statement["leaf_index"] == 0
    with session_scope(platform.engine) as session:
        seal = x509.load_der_x509_certificate(current_seal(session, platform.pki).der)
    seal.public_key().verify(receipt.signature, rfc8785.dumps(statement), ec.ECDSA(hashes.SHA256()))
    head = statement["tree_head"]
    head_statement = ballot_log.tree_head_statement(meeting, head["tree_size"], base64.b64decode(head["root_hash"]),
                                                    dt.datetime.fromisoformat(head["issued_at"]))
    seal.public_key().verify(base64.b64decode(head["signature"]), head_statement, ec.ECDSA(hashes.SHA256()))
    with session_scope(platform.engine) as session:
        row = session.execute(select(BallotRow)).scalar_one()
    entry = ballots.log_entry(meeting, "H001", row.ballot_sha256, hashlib.sha256(cms).hexdigest(), row.received_at)
    assert merkle.verify_inclusion(merkle.leaf_hash(entry), 0, 1, [], base64.b64decode(head["root_hash"]))


def test_first_ballot_received_counts_even_if_later_one_differs(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    first = submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}))
    second = submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}))
    assert (first.status, second.status) == ("counted", "superseded")
    assert second.statement["leaf_index"] == 1 and second.statement["tree_head"]["tree_size"] == 2


def test_a_ballot_signed_by_someone_else_than_the_holder_is_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)])
    voter(platform, "H001", NATIONAL_IDS[0])
    mallory = voter(platform, "H002", NATIONAL_IDS[1])
    assert refusal(platform, *signed(platform, mallory, meeting, holder_no="H001")) == "not_the_holder"


def test_a_ballot_cannot_be_replayed_into_another_meeting(platform: Platform) -> None:
    first = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    second = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, first)
    assert refusal(platform, payload, cms, meeting_public_id=second) == "meeting_mismatch"
    assert refusal(platform, payload, cms, meeting_public_id=first) == "accepted"
    assert refusal(platform, payload, cms, meeting_public_id=first) == "duplicate_ballot"


def test_ballots_outside_the_window_and_tampered_ones_are_refused(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    assert refusal(platform, payload, cms, received_at=utcnow() + dt.timedelta(days=30)) == "voting_closed"
    assert refusal(platform, payload, cms, received_at=utcnow() - dt.timedelta(days=30)) == "voting_not_open"
    tampered = payload.replace(b'"CAGS"', b'"CFOR"')
    assert refusal(platform, tampered, cms) == "invalid_signature"
    assert refusal(platform, payload, b"\x30\x03garbage") == "invalid_signature"
    assert refusal(platform, b"{not json", cms) != "accepted"
    unknown_item = signed(platform, alice, meeting, {"9": "CFOR"})
    assert refusal(platform, *unknown_item) == "unknown_item"


def test_an_over_allocated_election_is_void_on_that_ballot_only(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    receipt = submit(platform, *signed(platform, alice, meeting, {"1": "CFOR", "3": {"allocations": {"C1": 2001}}}))
    assert receipt.status == "counted"
    with session_scope(platform.engine) as session:
        assert session.execute(select(BallotRow.item_status)).scalar_one() == '{"3": "void_over_allocation"}'


def test_fifty_parallel_submissions_by_one_holder_leave_exactly_one_counted_ballot(any_platform: Platform) -> None:
    meeting = make_meeting(any_platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(any_platform, "H001", NATIONAL_IDS[0])
    submissions = [signed(any_platform, alice, meeting, {"1": "CFOR" if n % 2 else "CAGS"}) for n in range(50)]
    start = threading.Barrier(50)

    def send(submission: tuple[bytes, bytes]) -> str:
        start.wait()
        with Session(any_platform.engine, expire_on_commit=False) as session:
            receipt = ballots.submit_ballot(session, any_platform.pki, payload=submission[0], cms=submission[1])
            session.commit()
            return receipt.status

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(send, submissions))
    assert statuses.count("counted") == 1 and statuses.count("superseded") == 49
    with session_scope(any_platform.engine) as session:
        counted = session.execute(select(func.count()).select_from(BallotRow)
                                  .where(BallotRow.status == "counted")).scalar_one()
        leaves = ballot_log.leaf_hashes(session, 1)
    assert counted == 1 and len(leaves) == 50
    assert merkle.root_hash(leaves) == ballot_log_root(any_platform)


def ballot_log_root(platform: Platform) -> bytes:
    with session_scope(platform.engine) as session:
        return ballot_log.latest_tree_head(session, 1).root_hash


@pytest.mark.parametrize("role", [Role.ISSUER_HOST])
def test_a_host_of_another_issuer_cannot_see_the_meeting(platform: Platform, role: Role) -> None:
    make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    with session_scope(platform.engine) as session:
        assert service.list_meetings(session, Actor("other", role, "2317")) == []
        with pytest.raises(AppError) as refused:
            service.publish_meeting(session, actor=Actor("other", role, "2317"), meeting_id=1)
    assert refused.value.code == "unknown_meeting"


@pytest.mark.parametrize("payload", [
    b'{"big":' + b"9" * 5000 + b"}", b"[" * 30000 + b"]" * 30000,
    b'{"choices":{},"created_at":"2026-06-01T00:00:00Z","holder":"H001","meeting":"\\u0000","nonce":"'
    + b"A" * 22 + b'","type":"cloudseal.ballot/1"}'])
def test_hostile_ballot_payloads_get_4xx_on_every_backend(any_platform: Platform, payload: bytes) -> None:
    assert refusal(any_platform, payload, b"\x30\x00") in ("not_json", "invalid_field")


def test_the_log_orders_ballots_as_they_were_received(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submissions = [signed(platform, alice, meeting, {"1": "CFOR"}) for _ in range(12)]
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda s: submit(platform, *s), submissions))
    with session_scope(platform.engine) as session:
        rows = session.execute(select(BallotRow.received_at, BallotRow.status).order_by(BallotRow.leaf_index)).all()
    assert [r.received_at for r in rows] == sorted(r.received_at for r in rows)
    assert rows[0].status == "counted" and {r.status for r in rows[1:]} == {"superseded"}
