"""The certificate lifecycle through the RA and the app, tenancy, and the audit trail."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlmodel import Session

from ca.models import IssuedCertificate
from cloudseal.platform import Platform
from core import audit
from core.db import session_scope
from core.errors import CommittedRefusal
from ra.models import Credential
from tests.conftest import bearer
from tests.interop.conftest import require_tool
from tests.ra.factories import (
    Phone,
    enrol_and_activate,
    enrolment_body,
    officer,
)
from tests.support.servers import LiveServer


def credential(platform: Platform) -> Credential:
    with session_scope(platform.engine) as session:
        return session.execute(select(Credential).where(Credential.current == 1)).scalar_one()


def certificate_status(platform: Platform, serial: str) -> str:
    with session_scope(platform.engine) as session:
        return session.execute(select(IssuedCertificate.status).where(IssuedCertificate.serial_hex == serial)).scalar_one()


def ocsp_status(platform: Platform, serial: str) -> str:
    with session_scope(platform.engine) as session:
        der = session.execute(select(IssuedCertificate.der).where(IssuedCertificate.serial_hex == serial)).scalar_one()
        issuer = platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))
    request = ocsp.OCSPRequestBuilder().add_certificate(x509.load_der_x509_certificate(der), issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(platform.ocsp.respond(request.public_bytes(Encoding.DER)).der)
    return answer.certificate_status.name.lower()


# Tenancy: broker A's officer and an investor linked only to broker B ----------------------------

@pytest.fixture
def b_only_investor(client: TestClient, platform: Platform, brokers: None) -> int:
    investor_id, _ = enrol_and_activate(client, platform, broker="B002")
    return investor_id


def _as_b001(client: TestClient, platform: Platform, method: str, path: str, **kw: object):
    return client.request(method, path, headers=officer(platform, "B001"), **kw)


def test_other_broker_cannot_see_the_investor(client: TestClient, platform: Platform, b_only_investor: int) -> None:
    response = _as_b001(client, platform, "GET", f"/ra/investors/{b_only_investor}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_investor"
    assert _as_b001(client, platform, "GET", "/ra/investors").json()["total"] == 0
    missing = _as_b001(client, platform, "GET", "/ra/investors/999999")
    assert missing.json() == response.json()  # indistinguishable from a missing one


def test_other_broker_cannot_approve_its_enrolment(client: TestClient, platform: Platform, brokers: None) -> None:
    enrolment = client.post("/ra/enrolments", json=enrolment_body(), headers=officer(platform, "B002")).json()
    response = _as_b001(client, platform, "POST", f"/ra/enrolments/{enrolment['enrolment_id']}/approve")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_enrolment"


def test_other_broker_cannot_revoke(client: TestClient, platform: Platform, b_only_investor: int) -> None:
    response = _as_b001(client, platform, "POST", f"/ra/investors/{b_only_investor}/revoke", json={"reason": "keyCompromise"})
    assert response.status_code == 404
    assert credential(platform).status == "active"


def test_other_broker_cannot_suspend(client: TestClient, platform: Platform, b_only_investor: int) -> None:
    assert _as_b001(client, platform, "POST", f"/ra/investors/{b_only_investor}/suspend").status_code == 404
    assert credential(platform).status == "active"


def test_other_broker_cannot_unblock(client: TestClient, platform: Platform, b_only_investor: int) -> None:
    assert _as_b001(client, platform, "POST", f"/ra/investors/{b_only_investor}/unblock").status_code == 404


def test_other_broker_cannot_replace_the_device(client: TestClient, platform: Platform, b_only_investor: int) -> None:
    response = _as_b001(client, platform, "POST", f"/ra/investors/{b_only_investor}/device-replacement",
                        json={"proofing": "branch"})
    assert response.status_code == 404


# Lifecycle ----------------------------------------------------------------------------------------

def test_officer_revocation_reaches_ocsp_at_once_per_openssl(client: TestClient, platform: Platform,
                                                             brokers: None, tmp_path) -> None:
    investor_id, _ = enrol_and_activate(client, platform)
    cred = credential(platform)
    with session_scope(platform.engine) as session:
        leaf = session.execute(select(IssuedCertificate.der).where(IssuedCertificate.serial_hex == cred.certificate_serial)).scalar_one()
    (tmp_path / "leaf.pem").write_bytes(x509.load_der_x509_certificate(leaf).public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(client.get("/pki/chain.pem").content)
    (tmp_path / "issuing.pem").write_bytes(
        x509.load_der_x509_certificate(client.get("/pki/issuing.crt").content).public_bytes(Encoding.PEM))
    revoked = client.post(f"/ra/investors/{investor_id}/revoke", json={"reason": "keyCompromise"},
                          headers=officer(platform, "B001"))
    assert revoked.status_code == 200 and revoked.json()["credential"]["status"] == "revoked"
    from cloudseal.app import create_app
    with LiveServer(create_app(platform=platform, background_refresh=False)) as server:
        out = subprocess.run([require_tool("openssl"), "ocsp", "-url", f"{server.url}/pki/ocsp",
                              "-issuer", str(tmp_path / "issuing.pem"), "-CAfile", str(tmp_path / "chain.pem"),
                              "-cert", str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=60)
    assert "leaf.pem: revoked" in out.stdout, out.stdout + out.stderr
    assert "Reason: keyCompromise" in out.stdout
    assert not platform.keystore.has_key(cred.key_label)


def test_investor_revokes_from_the_app_with_pin_and_device(client: TestClient, platform: Platform, brokers: None) -> None:
    _, phone = enrol_and_activate(client, platform)
    serial = credential(platform).certificate_serial
    response = client.post("/ra/app/revoke", json={**phone.proof(client, "revoke"), "pin": "482916",
                                                   "reason": "keyCompromise"})
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert ocsp_status(platform, serial) == "revoked"


def test_app_proof_for_another_action_or_replayed_challenge_is_refused(client: TestClient, platform: Platform,
                                                                      brokers: None) -> None:
    _, phone = enrol_and_activate(client, platform)
    wrong_action = client.post("/ra/app/revoke", json={**phone.proof(client, "renew"), "pin": "482916"})
    assert wrong_action.status_code == 401 and wrong_action.json()["error"]["code"] == "bad_device_proof"
    proof = phone.proof(client, "pin_change")
    first = client.post("/ra/app/pin", json={**proof, "old_pin": "482916", "new_pin": "739184"})
    assert first.status_code == 204
    replay = client.post("/ra/app/pin", json={**proof, "old_pin": "739184", "new_pin": "582014"})
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "invalid_challenge"


def test_suspend_and_resume_follow_certificate_hold(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, _ = enrol_and_activate(client, platform)
    serial = credential(platform).certificate_serial
    headers = officer(platform, "B001")
    assert client.post(f"/ra/investors/{investor_id}/suspend", headers=headers).json()["credential"]["status"] == "suspended"
    assert certificate_status(platform, serial) == "on_hold" and ocsp_status(platform, serial) == "revoked"
    assert client.post(f"/ra/investors/{investor_id}/resume", headers=headers).json()["credential"]["status"] == "active"
    assert ocsp_status(platform, serial) == "good"


def test_five_wrong_pins_lock_and_an_officer_unblocks(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, phone = enrol_and_activate(client, platform)
    codes = [client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "000111"}).json()["error"]["code"]
             for _ in range(5)]
    assert codes == ["wrong_pin"] * 4 + ["pin_locked"]
    right_but_locked = client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "482916"})
    assert right_but_locked.status_code == 403 and right_but_locked.json()["error"]["code"] == "pin_locked"
    shown = client.post(f"/ra/investors/{investor_id}/unblock", headers=officer(platform, "B001")).json()
    assert shown["credential"]["pin_locked"] is False
    assert client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "482916"}).status_code == 200


def test_concurrent_wrong_pins_still_lock_after_five(any_platform: Platform) -> None:
    from ra import credentials as ra_credentials
    from tests.ra.service_flow import activated_credential

    credential_id = activated_credential(any_platform)

    def attempt(_: int) -> str:
        with Session(any_platform.engine, expire_on_commit=False) as session:
            try:
                ra_credentials.verify_pin(session, any_platform.pki,
                                          ra_credentials.get_credential(session, credential_id), "000111")
            except CommittedRefusal as refusal:
                session.commit()
                return refusal.code
        return "accepted"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(12)))
    assert outcomes.count("wrong_pin") == 4 and "accepted" not in outcomes
    with Session(any_platform.engine) as session:
        locked = ra_credentials.get_credential(session, credential_id)
        assert locked.locked_at is not None and locked.pin_failures == 5


def test_pin_change_needs_the_old_pin_and_a_strong_new_one(client: TestClient, platform: Platform, brokers: None) -> None:
    _, phone = enrol_and_activate(client, platform)
    weak = client.post("/ra/app/pin", json={**phone.proof(client, "pin_change"), "old_pin": "482916", "new_pin": "111111"})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "weak_pin"
    wrong = client.post("/ra/app/pin", json={**phone.proof(client, "pin_change"), "old_pin": "999999", "new_pin": "739184"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "wrong_pin"
    ok = client.post("/ra/app/pin", json={**phone.proof(client, "pin_change"), "old_pin": "482916", "new_pin": "739184"})
    assert ok.status_code == 204
    assert client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "739184"}).status_code == 200


def test_device_replacement_goes_through_the_ra_and_a_new_code(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, old_phone = enrol_and_activate(client, platform)
    headers = officer(platform, "B001")
    serial = credential(platform).certificate_serial
    request = client.post(f"/ra/investors/{investor_id}/device-replacement", json={"proofing": "branch visit"},
                          headers=headers)
    assert request.status_code == 201 and request.json()["purpose"] == "device_replacement"
    client.post(f"/ra/enrolments/{request.json()['enrolment_id']}/approve", headers=headers)
    from tests.ra.factories import latest_activation
    new_phone = Phone()
    assert new_phone.redeem(client, latest_activation(platform), pin="640271").status_code == 201
    assert new_phone.credential_id == old_phone.credential_id
    assert credential(platform).certificate_serial == serial  # same key and certificate, new device
    old = client.post("/ra/app/renew", json={**old_phone.proof(client, "renew"), "pin": "482916"})
    assert old.status_code == 401 and old.json()["error"]["code"] == "bad_device_proof"
    assert client.post("/ra/app/renew", json={**new_phone.proof(client, "renew"), "pin": "640271"}).status_code == 200


def test_renewal_makes_a_new_key_and_supersedes_the_old_certificate(client: TestClient, platform: Platform,
                                                                    brokers: None) -> None:
    _, phone = enrol_and_activate(client, platform)
    before = credential(platform)
    renewed = client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "482916"})
    assert renewed.status_code == 200
    after = credential(platform)
    assert after.credential_id == before.credential_id
    assert after.certificate_serial != before.certificate_serial and after.key_label != before.key_label
    assert ocsp_status(platform, before.certificate_serial) == "revoked"
    assert ocsp_status(platform, after.certificate_serial) == "good"
    assert not platform.keystore.has_key(before.key_label) and platform.keystore.has_key(after.key_label)
    leaf = x509.load_pem_x509_certificate(renewed.json()["certificate_chain"][0].encode())
    assert leaf.public_key() == platform.keystore.public_key(after.key_label)


def test_revoked_credential_does_nothing_more(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, phone = enrol_and_activate(client, platform)
    client.post(f"/ra/investors/{investor_id}/revoke", json={"reason": "cessationOfOperation"}, headers=officer(platform, "B001"))
    again = client.post(f"/ra/investors/{investor_id}/revoke", json={"reason": "keyCompromise"}, headers=officer(platform, "B001"))
    assert again.status_code == 409
    renew = client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "482916"})
    assert renew.status_code == 409 and renew.json()["error"]["code"] == "credential_not_active"


def test_operator_can_act_on_any_investor(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, _ = enrol_and_activate(client, platform, broker="B002")
    assert client.get(f"/ra/investors/{investor_id}", headers=bearer(platform)).status_code == 200
    assert client.post(f"/ra/investors/{investor_id}/suspend", headers=bearer(platform)).status_code == 200


def test_audit_chain_holds_after_a_full_lifecycle_and_breaks_after_an_edit(client: TestClient, platform: Platform,
                                                                          brokers: None) -> None:
    investor_id, phone = enrol_and_activate(client, platform)
    headers = officer(platform, "B001")
    client.post(f"/ra/investors/{investor_id}/suspend", headers=headers)
    client.post(f"/ra/investors/{investor_id}/resume", headers=headers)
    client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "482916"})
    client.post(f"/ra/investors/{investor_id}/revoke", json={"reason": "keyCompromise"}, headers=headers)
    with Session(platform.engine) as session:
        report = audit.verify_chain(session)
        actions = set(session.execute(text("SELECT action FROM audit_event")).scalars())
    assert report.ok, report.problems
    assert {"enrolment.submit", "enrolment.approve", "credential.activate", "credential.suspend",
            "credential.resume", "credential.renew", "credential.revoke", "certificate.issue"} <= actions
    with session_scope(platform.engine) as session:
        session.execute(text("UPDATE audit_event SET actor = 'nobody' WHERE action = 'credential.revoke'"))
    with Session(platform.engine) as session:
        assert not audit.verify_chain(session).ok
