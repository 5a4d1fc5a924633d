"""Who may read and do what through the mobile API: only one's own, only with a live device,
a live session and the right PIN, each prepared ballot once, before the deadline."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import update

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope, utcnow
from mobile_api.client import MobileApiError, MobileClient, authorization_action, challenge_message
from mobile_api.models import MobileSubmission
from tests.mobile.factories import CHOICES, NATIONAL_IDS, PIN, close_window, new_investor, publish_meeting
from tests.ra.factories import latest_activation, officer
from tests.support.servers import LiveServer


def refusal(call) -> tuple[int, str]:
    with pytest.raises(MobileApiError) as refused:
        call()
    return refused.value.status, refused.value.code


def get(client: TestClient, app: MobileClient, path: str) -> tuple[int, str | None]:
    answer = client.get("/mobile/v1" + path, headers=app.headers())
    return answer.status_code, answer.json()["error"]["code"] if answer.status_code >= 400 else None


def test_an_investor_cannot_read_another_investors_ballots_receipts_devices_or_meetings(
        client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    bob = new_investor(client, platform, NATIONAL_IDS[1])
    hers, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)], title="Alice's AGM")
    his, _ = publish_meeting(client, platform, [("H777", NATIONAL_IDS[1], 10, 0)], issuer="2317", title="Bob's AGM")
    sha = alice.vote(hers, CHOICES, PIN)["payload_sha256"]
    pending = alice.prepare_ballot(hers, {"1": "CFOR"})
    alice_device = alice.me()["devices"][0]["device_id"]

    assert [m["public_id"] for m in bob.meetings(when="all")["items"]] == [his]
    assert get(client, bob, f"/meetings/{hers}") == (404, "unknown_meeting")
    assert get(client, bob, f"/meetings/{hers}/result") == (404, "unknown_meeting")
    assert get(client, bob, f"/ballots?meeting={hers}") == (404, "unknown_meeting")
    assert get(client, bob, f"/meetings/{hers}/ballots/{sha}") == (404, "unknown_ballot")
    assert get(client, bob, f"/meetings/{hers}/ballots/{sha}/proof") == (404, "unknown_ballot")
    assert get(client, bob, f"/me/devices/{alice_device}") == (404, "unknown_device")
    assert bob.ballots()["items"] == [] and bob.receipts()["items"] == []
    assert refusal(lambda: bob.prepare_ballot(hers, {"1": "CFOR"})) == (404, "unknown_meeting")
    assert refusal(lambda: bob.submit(pending, PIN, verify=False)) == (404, "unknown_submission")
    assert alice.submit(pending, PIN)["status"] == "superseded"  # still hers to send
    assert get(client, alice, f"/me/devices/{alice_device}") == (200, None)


def test_a_token_of_a_revoked_or_replaced_device_is_refused(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    stale = alice.headers()
    alice.revoke_certificate(PIN, reason="keyCompromise")
    answer = client.get("/mobile/v1/me", headers=stale)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "credential_revoked"
    assert refusal(alice.login) == (401, "credential_revoked")  # the device key no longer signs anyone in

    bob = new_investor(client, platform, NATIONAL_IDS[1])
    old_phone = bob.headers()
    investor_id = client.get("/ra/investors", params={"q": bob.investor_reference},
                             headers=officer(platform, "B001")).json()["items"][0]["investor_id"]
    replacement = client.post(f"/ra/investors/{investor_id}/device-replacement", json={"proofing": "ID card seen"},
                              headers=officer(platform, "B001"))
    client.post(f"/ra/enrolments/{replacement.json()['enrolment_id']}/approve", headers=officer(platform, "B001"))
    activation = latest_activation(platform)
    new_phone = MobileClient(client)
    new_phone.activate(activation["activation_id"], activation["code"], "731946")
    assert new_phone.credential_id == bob.credential_id and new_phone.me()["devices"][0]["current"]
    answer = client.get("/mobile/v1/me", headers=old_phone)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "device_replaced"
    assert refusal(bob.refresh) == (401, "device_replaced")


def test_a_reused_refresh_token_is_refused_and_closes_the_session(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    first_refresh, first_access = alice._refresh, alice.headers()
    alice.refresh()
    assert client.get("/mobile/v1/me", headers=first_access).status_code == 200  # rotation keeps the session
    stolen = client.post("/mobile/v1/auth/refresh", json={"refresh_token": first_refresh})
    assert stolen.status_code == 401 and stolen.json()["error"]["code"] == "refresh_token_reused"
    assert refusal(alice.refresh) == (401, "invalid_refresh_token")
    answer = client.get("/mobile/v1/me", headers=first_access)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "session_revoked"
    alice.login()  # the device key signs in again: a new session
    assert alice.me()["investor_reference"] == alice.investor_reference
    before_logout = alice.headers()
    alice.logout()
    assert client.get("/mobile/v1/me", headers=before_logout).json()["error"]["code"] == "session_revoked"


def test_a_ballot_authorised_for_another_digest_is_refused(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    wanted = alice.prepare_ballot(public_id, {"1": "CFOR"})
    other = alice.prepare_ballot(public_id, {"1": "CAGS"})
    # The device's proof over the *other* ballot's digest, sent to submit this one.
    action = authorization_action(hashlib.sha256(other.payload).digest())
    message = challenge_message(wanted.challenge_id, wanted.nonce, action, alice.credential_id or "")
    signature = base64.b64encode(alice.device_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()
    answer = client.post(f"/mobile/v1/submissions/{wanted.submission_id}",
                         json={"pin": PIN, "device_signature": signature}, headers=alice.headers())
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "bad_device_proof"
    # And a proof for this ballot's digest sent with the other one.
    right = challenge_message(wanted.challenge_id, wanted.nonce,
                              authorization_action(hashlib.sha256(wanted.payload).digest()), alice.credential_id or "")
    swapped = client.post(f"/mobile/v1/submissions/{other.submission_id}", headers=alice.headers(), json={
        "pin": PIN, "device_signature": base64.b64encode(alice.device_key.sign(right, ec.ECDSA(hashes.SHA256()))).decode()})
    assert swapped.status_code == 401 and swapped.json()["error"]["code"] == "bad_device_proof"
    assert alice.ballots()["items"] == []
    assert alice.submit(wanted, PIN)["status"] == "counted"  # the refusal left it unused


def test_wrong_pins_count_toward_the_lockout(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    assert refusal(lambda: alice.change_pin("000001", "739164")) == (401, "wrong_pin")
    assert alice.me()["certificate"]["pin_tries_left"] == 4
    for _ in range(3):
        assert refusal(lambda: alice.vote(public_id, CHOICES, "111119")) == (401, "wrong_pin")
    assert refusal(lambda: alice.vote(public_id, CHOICES, "111119")) == (403, "pin_locked")
    assert refusal(lambda: alice.vote(public_id, CHOICES, PIN)) == (403, "pin_locked")
    certificate = alice.me()["certificate"]
    assert certificate["pin_locked"] and certificate["pin_tries_left"] == 0
    assert alice.ballots()["items"] == []


def test_a_prepared_ballot_works_once_and_not_after_it_expired(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    prepared = alice.prepare_ballot(public_id, CHOICES)
    alice.submit(prepared, PIN)
    assert refusal(lambda: alice.submit(prepared, PIN)) == (409, "submission_used")
    late = alice.prepare_ballot(public_id, CHOICES)
    with session_scope(platform.engine) as session:
        session.execute(update(MobileSubmission).where(MobileSubmission.id == late.submission_id)
                        .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert refusal(lambda: alice.submit(late, PIN)) == (409, "submission_expired")
    assert len(alice.ballots()["items"]) == 1


def test_the_deadline_refuses_ballots_and_revocations_with_the_voting_codes(client: TestClient,
                                                                            platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, meeting_id = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    alice.vote(public_id, CHOICES, PIN)
    prepared = alice.prepare_ballot(public_id, {"1": "ABST"})
    revocation = alice.prepare_revocation(public_id)
    close_window(platform, meeting_id)
    assert refusal(lambda: alice.submit(prepared, PIN)) == (409, "voting_closed")
    assert refusal(lambda: alice.submit(revocation, PIN)) == (409, "revocation_too_late")
    assert refusal(lambda: alice.prepare_ballot(public_id, CHOICES)) == (409, "voting_closed")
    assert refusal(lambda: alice.prepare_revocation(public_id)) == (409, "revocation_too_late")
    assert [b["status"] for b in alice.ballots()["items"]] == ["counted"]
    assert alice.meeting(public_id)["voting_open"] is False


def test_racing_submissions_of_one_prepared_ballot_record_exactly_one(any_platform: Platform) -> None:
    app = create_app(platform=any_platform, background_refresh=False)
    with TestClient(app) as client, LiveServer(app) as server:
        alice = new_investor(client, any_platform, NATIONAL_IDS[0])
        public_id, _ = publish_meeting(client, any_platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
        prepared = alice.prepare_ballot(public_id, CHOICES)
        action = authorization_action(hashlib.sha256(prepared.payload).digest())
        message = challenge_message(prepared.challenge_id, prepared.nonce, action, alice.credential_id or "")
        body = {"pin": PIN, "device_signature": base64.b64encode(
            alice.device_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()}
        headers, start = alice.headers(), threading.Barrier(8)

        def send(_: int) -> int:
            start.wait()
            return httpx.post(f"{server.url}/mobile/v1/submissions/{prepared.submission_id}", json=body,
                              headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(8)))
        assert statuses.count(201) == 1 and all(s in (201, 401, 409) for s in statuses), statuses
        assert len(alice.ballots()["items"]) == 1


def test_racing_wrong_pins_lock_the_credential_after_five_and_the_lock_holds(any_platform: Platform) -> None:
    app = create_app(platform=any_platform, background_refresh=False)
    with TestClient(app) as client, LiveServer(app) as server:
        alice = new_investor(client, any_platform, NATIONAL_IDS[0])
        public_id, _ = publish_meeting(client, any_platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
        bodies = []
        for _ in range(8):
            prepared = alice.prepare_ballot(public_id, {"1": "CFOR"})
            action = authorization_action(hashlib.sha256(prepared.payload).digest())
            message = challenge_message(prepared.challenge_id, prepared.nonce, action, alice.credential_id or "")
            bodies.append((prepared.submission_id, {"pin": "111119", "device_signature": base64.b64encode(
                alice.device_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()}))
        headers, start = alice.headers(), threading.Barrier(8)

        def send(job: tuple[str, dict[str, str]]) -> tuple[int, str]:
            start.wait()
            answer = httpx.post(f"{server.url}/mobile/v1/submissions/{job[0]}", json=job[1], headers=headers,
                                timeout=60)
            return answer.status_code, answer.json()["error"]["code"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, bodies))
        assert sorted(answers) == [(401, "wrong_pin")] * 4 + [(403, "pin_locked")] * 4, answers
        assert refusal(lambda: alice.vote(public_id, {"1": "CFOR"}, PIN)) == (403, "pin_locked")
        assert alice.me()["certificate"]["pin_tries_left"] == 0 and alice.ballots()["items"] == []
