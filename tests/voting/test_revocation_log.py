"""Revocations are logged beside the ballots, in order of receipt, and get a sealed receipt."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca.bootstrap import current_seal
from cloudseal.platform import Platform
from core.db import session_scope
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import code_of, meeting_row, revocation, revoke_sealed
from tests.voting.test_ballots import make_meeting, signed, submit, voter
from voting import attendance, ballot_log, merkle
from voting.models import BallotRevocation, BallotRow, Meeting


def seal_key(platform: Platform) -> ec.EllipticCurvePublicKey:
    with session_scope(platform.engine) as session:
        certificate = x509.load_der_x509_certificate(current_seal(session, platform.pki).der)
    return certificate.public_key()  # type: ignore[return-value]


def log_size(platform: Platform, meeting: str) -> int:
    with session_scope(platform.engine) as session:
        return ballot_log.log_size(session, meeting_row(platform, meeting).id or 0)


def test_an_accepted_revocation_is_logged_and_its_sealed_receipt_verifies(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    first = submit(platform, *signed(platform, alice, meeting, {"1": "CFOR"}))
    second = submit(platform, *signed(platform, alice, meeting, {"1": "CAGS"}))
    payload, cms = revocation(platform, alice, meeting)
    accepted = revoke_sealed(platform, payload, cms)
    statement = accepted.receipt.statement
    assert (accepted.revoked_ballots, accepted.leaf_index, accepted.receipt.status) == (2, 2, "revoked")
    assert statement["type"] == "cloudseal.revocation-receipt/1" and statement["holder"] == "H001"
    assert statement["revocation_sha256"] == hashlib.sha256(payload).hexdigest() and statement["leaf_index"] == 2
    assert statement["revoked"] == [first.statement["ballot_sha256"], second.statement["ballot_sha256"]]
    key = seal_key(platform)
    key.verify(accepted.receipt.signature, rfc8785.dumps(statement), ec.ECDSA(hashes.SHA256()))
    head = statement["tree_head"]
    assert head["tree_size"] == 3 and accepted.receipt.seal_serial == head["seal_serial"]
    key.verify(base64.b64decode(head["signature"]), ballot_log.tree_head_statement(
        meeting, 3, base64.b64decode(head["root_hash"]), dt.datetime.fromisoformat(head["issued_at"])),
        ec.ECDSA(hashes.SHA256()))
    with session_scope(platform.engine) as session:
        rows = session.execute(select(BallotRevocation)).scalars().all()
        proof = ballot_log.inclusion_proof(session, rows[0].meeting_id, 2, 3)
    assert {(r.leaf_index, r.receipt) for r in rows} == {(2, json.dumps(accepted.receipt.to_json()))}
    assert statement["received_at"] == ballot_log.log_time(rows[0].received_at)
    entry = attendance.revocation_log_entry(meeting, "H001", hashlib.sha256(payload).hexdigest(),
                                            hashlib.sha256(cms).hexdigest(), statement["revoked"], rows[0].received_at)
    assert json.loads(entry)["type"] == "cloudseal.revocation-entry/1"
    assert merkle.verify_inclusion(merkle.leaf_hash(entry), 2, 3, proof, base64.b64decode(head["root_hash"]))


def test_a_refused_revocation_appends_nothing_to_the_log(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 10)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    bob = voter(platform, "H002", NATIONAL_IDS[1])
    submit(platform, *signed(platform, alice, meeting))
    withdrawal = revocation(platform, alice, meeting)
    late = meeting_row(platform, meeting).closes_at
    assert code_of(lambda: revoke_sealed(platform, *withdrawal, received_at=late)) == "revocation_too_late"
    assert code_of(lambda: revoke_sealed(platform, *revocation(platform, bob, meeting))) == "nothing_to_revoke"
    assert log_size(platform, meeting) == 1
    assert revoke_sealed(platform, *withdrawal).leaf_index == 1
    assert code_of(lambda: revoke_sealed(platform, *withdrawal)) == "duplicate_revocation"
    assert log_size(platform, meeting) == 2


def test_ballots_and_revocations_take_consecutive_leaves_in_order_of_receipt(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    indexes = []
    for choice in ("CFOR", "CAGS", "ABST"):
        indexes.append(submit(platform, *signed(platform, alice, meeting, {"1": choice})).statement["leaf_index"])
        indexes.append(revoke_sealed(platform, *revocation(platform, alice, meeting)).leaf_index)
    assert indexes == list(range(6)) and log_size(platform, meeting) == 6


def test_concurrent_ballots_and_revocations_interleave_in_the_log_as_they_were_received(platform: Platform) -> None:
    meeting = make_meeting(platform, [(f"H{n:03d}", NATIONAL_IDS[n], 100) for n in range(3)])
    voters = [voter(platform, f"H{n:03d}", NATIONAL_IDS[n]) for n in range(3)]
    work = [(signed(platform, v, meeting), revocation(platform, v, meeting), signed(platform, v, meeting))
            for v in voters]
    start = threading.Barrier(len(work))

    def holder_sends(submissions: tuple) -> None:
        ballot, withdrawal, again = submissions
        start.wait()
        submit(platform, *ballot)
        revoke_sealed(platform, *withdrawal)
        submit(platform, *again)

    with ThreadPoolExecutor(len(work)) as pool:
        list(pool.map(holder_sends, work))
    with session_scope(platform.engine) as session:
        meeting_id = session.execute(select(Meeting.id).where(Meeting.public_id == meeting)).scalar_one()
        received = session.execute(select(BallotRow.leaf_index, BallotRow.received_at)).all()
        received += session.execute(select(BallotRevocation.leaf_index, BallotRevocation.received_at)).all()
        counted = session.execute(select(BallotRow.status).where(BallotRow.status == "counted")).scalars().all()
        size = ballot_log.log_size(session, meeting_id)
    in_log_order = sorted(received)
    assert [index for index, _ in in_log_order] == list(range(9)) == list(range(size))
    assert [at for _, at in in_log_order] == sorted(at for _, at in received)
    assert len(counted) == 3


def test_the_revocation_endpoint_returns_the_sealed_receipt(client: TestClient, platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    submit(platform, *signed(platform, alice, meeting))
    payload, cms = revocation(platform, alice, meeting)
    body = {"payload": base64.b64encode(payload).decode(), "cms": base64.b64encode(cms).decode()}
    answer = client.post("/voting/revocations", json=body)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["revoked_ballots"] == 1 and out["receipt"]["leaf_index"] == 1
    seal_key(platform).verify(base64.b64decode(out["signature"]), rfc8785.dumps(out["receipt"]),
                              ec.ECDSA(hashes.SHA256()))
    assert out["seal_serial"] == out["receipt"]["tree_head"]["seal_serial"]
    replayed = client.post("/voting/revocations", json=body)
    assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "duplicate_revocation"
    proof = client.get(f"/voting/log/{meeting}/inclusion", params={"leaf_index": 1, "tree_size": 2})
    assert proof.status_code == 200 and len(proof.json()["path"]) == 1
