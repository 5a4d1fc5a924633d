"""Enrolment across brokers: one identity, approvals, activation codes, PIN and device."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope
from core.errors import AppError
from ra import service
from ra.models import ActivationCode, BrokerAccount, Credential, Enrolment, Investor
from tests.conftest import bearer
from tests.ra.factories import (
    NATIONAL_IDS,
    Phone,
    enrol_and_activate,
    enrolment_body,
    latest_activation,
    officer,
)


def count(platform: Platform, model: type) -> int:
    with session_scope(platform.engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def submit(client: TestClient, platform: Platform, broker: str, id_number: str = "A123456789",
           accounts: list[str] | None = None, officer_name: str = "olivia"):
    return client.post("/ra/enrolments", json=enrolment_body(id_number, accounts),
                       headers=officer(platform, broker, officer_name))


def test_enrolment_issues_a_certificate_with_the_key_in_the_hsm(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, phone = enrol_and_activate(client, platform)
    with session_scope(platform.engine) as session:
        credential = session.execute(select(Credential)).scalar_one()
        investor = session.get(Investor, investor_id)
    assert platform.keystore.has_key(credential.key_label)
    assert phone.credential_id == credential.credential_id
    shown = client.get(f"/ra/investors/{investor_id}", headers=officer(platform, "B001")).json()
    assert shown["credential"]["status"] == "active"
    assert shown["id_masked"] == "A12****789"
    assert investor.reference.startswith("INV-")
    assert len(investor.id_hmac) == 64 and "A123456789" not in investor.id_hmac


def test_redeem_returns_the_chain_with_the_public_key_the_hsm_holds(client: TestClient, platform: Platform,
                                                                    brokers: None) -> None:
    client.post("/ra/enrolments/%d/approve" % submit(client, platform, "B001").json()["enrolment_id"],
                headers=officer(platform, "B001"))
    phone = Phone()
    response = phone.redeem(client, latest_activation(platform))
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in response.json()["certificate_chain"]]
    leaf, issuing, root = chain
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    with session_scope(platform.engine) as session:
        label = session.execute(select(Credential.key_label)).scalar_one()
    assert leaf.public_key() == platform.keystore.public_key(label)
    assert "A123456789" not in leaf.subject.rfc4514_string()


def test_second_broker_links_an_account_to_the_same_identity(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, _ = enrol_and_activate(client, platform)
    second = submit(client, platform, "B002", accounts=["B2-0001"])
    assert second.json()["investor_id"] is None  # nothing about the identity is revealed at submit
    approved = client.post(f"/ra/enrolments/{second.json()['enrolment_id']}/approve", headers=officer(platform, "B002"))
    assert approved.json()["status"] == "linked" and approved.json()["activation_code_sent"] is False
    assert approved.json()["investor_id"] == investor_id
    assert count(platform, Investor) == 1 and count(platform, Credential) == 1


def test_each_broker_sees_only_its_own_account_links(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, _ = enrol_and_activate(client, platform, accounts=["A-1"])
    second = submit(client, platform, "B002", accounts=["B-1"]).json()
    client.post(f"/ra/enrolments/{second['enrolment_id']}/approve", headers=officer(platform, "B002"))
    seen_by_1 = client.get(f"/ra/investors/{investor_id}", headers=officer(platform, "B001")).json()
    seen_by_2 = client.get(f"/ra/investors/{investor_id}", headers=officer(platform, "B002")).json()
    assert [a["account_number"] for a in seen_by_1["accounts"]] == ["A-1"]
    assert [a["account_number"] for a in seen_by_2["accounts"]] == ["B-1"]
    assert seen_by_1["credential"]["credential_id"] == seen_by_2["credential"]["credential_id"]


def test_concurrent_enrolment_by_two_brokers_yields_one_identity(any_platform: Platform) -> None:
    operator = Actor("ops", Role.OPERATOR)
    with session_scope(any_platform.engine) as session:
        for code in ("B001", "B002", "B003", "B004"):
            service.create_broker(session, actor=operator, code=code, name=code)

    def submit_one(broker: str) -> int:
        with session_scope(any_platform.engine) as session:
            return service.submit_enrolment(
                session, any_platform.keystore, actor=Actor("o", Role.RA_OFFICER, broker), broker_code=None,
                id_kind="national_id", id_number="F131104093", name="Lin", birth_date=None,
                contact_channel="sms:+886900000000", accounts=[f"{broker}-9"], proofing="video call",
            ).id

    def approve(args: tuple[str, int]) -> int:
        broker, enrolment_id = args
        with session_scope(any_platform.engine) as session:
            enrolment, _ = service.approve_enrolment(session, actor=Actor("o", Role.RA_OFFICER, broker),
                                                     enrolment_id=enrolment_id)
            return enrolment.investor_id

    brokers = ["B001", "B002", "B003", "B004"]
    enrolment_ids = [submit_one(b) for b in brokers]
    with ThreadPoolExecutor(max_workers=4) as pool:  # the identity is created at approval
        investor_ids = set(pool.map(approve, zip(brokers, enrolment_ids)))
    assert len(investor_ids) == 1
    assert count(any_platform, Investor) == 1 and count(any_platform, Enrolment) == 4
    assert count(any_platform, ActivationCode) == 1  # one code; the others only link


def test_self_approval_is_refused_under_dual_control(client: TestClient, platform: Platform, brokers: None) -> None:
    enrolment = submit(client, platform, "B003").json()
    refused = client.post(f"/ra/enrolments/{enrolment['enrolment_id']}/approve", headers=officer(platform, "B003"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "self_approval"
    approved = client.post(f"/ra/enrolments/{enrolment['enrolment_id']}/approve",
                           headers=officer(platform, "B003", "second-officer"))
    assert approved.status_code == 200 and approved.json()["approved_by"] == "ra_officer:second-officer"


def test_single_approval_lets_the_submitter_approve(client: TestClient, platform: Platform, brokers: None) -> None:
    enrolment = submit(client, platform, "B001").json()
    assert client.post(f"/ra/enrolments/{enrolment['enrolment_id']}/approve",
                       headers=officer(platform, "B001")).status_code == 200


def test_two_officers_approving_at_once_give_one_approval_and_one_code(any_platform: Platform) -> None:
    operator = Actor("ops", Role.OPERATOR)
    with session_scope(any_platform.engine) as session:
        service.create_broker(session, actor=operator, code="B003", name="dual", dual_control=True)
        enrolment_id = service.submit_enrolment(
            session, any_platform.keystore, actor=Actor("maker", Role.RA_OFFICER, "B003"), broker_code=None,
            id_kind="national_id", id_number="A800000014", name="Wu", birth_date=None,
            contact_channel="sms:+886900000001", accounts=["7-1"], proofing="branch").id

    def approve(name: str) -> str:
        try:
            with session_scope(any_platform.engine) as session:
                service.approve_enrolment(session, actor=Actor(name, Role.RA_OFFICER, "B003"), enrolment_id=enrolment_id)
            return "approved"
        except AppError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(approve, ["checker-1", "checker-2", "checker-3", "checker-4"]))
    assert outcomes == ["approved", "not_pending", "not_pending", "not_pending"]
    assert count(any_platform, ActivationCode) == 1 and count(any_platform, BrokerAccount) == 1


def _approved_activation(client: TestClient, platform: Platform, id_number: str = "A123456789") -> dict[str, str]:
    enrolment = submit(client, platform, "B001", id_number=id_number).json()
    client.post(f"/ra/enrolments/{enrolment['enrolment_id']}/approve", headers=officer(platform, "B001"))
    return latest_activation(platform)


def test_expired_activation_code_is_refused(client: TestClient, platform: Platform, brokers: None) -> None:
    activation = _approved_activation(client, platform)
    with session_scope(platform.engine) as session:
        session.execute(update(ActivationCode).values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    response = Phone().redeem(client, activation)
    assert response.status_code == 400 and response.json()["error"]["code"] == "activation_expired"


def test_reused_activation_code_is_refused(client: TestClient, platform: Platform, brokers: None) -> None:
    activation = _approved_activation(client, platform)
    assert Phone().redeem(client, activation).status_code == 201
    again = Phone().redeem(client, activation)
    assert again.status_code == 409 and again.json()["error"]["code"] == "activation_used"


def test_brute_forced_code_locks_and_the_sixth_try_fails_even_when_right(client: TestClient, platform: Platform,
                                                                        brokers: None) -> None:
    activation = _approved_activation(client, platform)
    phone = Phone()
    for attempt in range(5):
        wrong = client.post("/ra/activation/redeem", json=phone.redeem_body(activation, code=f"WRONG-CODE-{attempt:04d}"))
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_activation_code"
    sixth = phone.redeem(client, activation)
    assert sixth.status_code == 403 and sixth.json()["error"]["code"] == "activation_locked"
    assert count(platform, Credential) == 0


@pytest.mark.parametrize("pin", ["12345", "000000", "123456", "987654", "121212", "123123", "800517", "19800517",
                                 "abcdef", "1234567890123"])
def test_weak_pin_is_refused_and_the_code_is_not_spent(client: TestClient, platform: Platform, brokers: None,
                                                       pin: str) -> None:
    activation = _approved_activation(client, platform)
    response = Phone().redeem(client, activation, pin=pin)
    assert response.status_code in (400, 422)
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "weak_pin"
    assert Phone().redeem(client, activation, pin="482916").status_code == 201


def test_device_signature_by_another_key_is_refused(client: TestClient, platform: Platform, brokers: None) -> None:
    activation = _approved_activation(client, platform)
    phone, impostor = Phone(), Phone()
    body = phone.redeem_body(activation)
    body["device_signature"] = impostor.redeem_body(activation)["device_signature"]
    response = client.post("/ra/activation/redeem", json=body)
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_device_proof"


def test_invalid_national_id_checksum_is_400_and_nothing_is_written(client: TestClient, platform: Platform,
                                                                    brokers: None) -> None:
    response = submit(client, platform, "B001", id_number="A123456788")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_identity"
    assert count(platform, Investor) == 0 and count(platform, Enrolment) == 0


def test_unknown_broker_is_404(client: TestClient, platform: Platform, brokers: None) -> None:
    response = client.post("/ra/enrolments", json=enrolment_body(broker_code="NOPE"), headers=bearer(platform))
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_broker"
    ghost = submit(client, platform, "B999")
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "unknown_broker"


def test_duplicate_account_link_is_409_and_nothing_is_written(client: TestClient, platform: Platform,
                                                              brokers: None) -> None:
    enrol_and_activate(client, platform, accounts=["ACC-1"])
    before = (count(platform, Investor), count(platform, Enrolment), count(platform, BrokerAccount))
    response = submit(client, platform, "B001", id_number=NATIONAL_IDS[1], accounts=["ACC-1"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "duplicate_account_link"
    assert (count(platform, Investor), count(platform, Enrolment), count(platform, BrokerAccount)) == before


def test_business_number_enrolment_masks_the_number(client: TestClient, platform: Platform, brokers: None) -> None:
    response = client.post("/ra/enrolments", headers=officer(platform, "B001"),
                           json=enrolment_body(id_kind="business_number", id_number="04595257", name="Acme Ltd"))
    assert response.status_code == 201
    shown = client.get("/ra/investors?q=04595257", headers=officer(platform, "B001")).json()
    assert shown["total"] == 0  # not linked until approved
    client.post(f"/ra/enrolments/{response.json()['enrolment_id']}/approve", headers=officer(platform, "B001"))
    shown = client.get("/ra/investors?q=04595257", headers=officer(platform, "B001")).json()
    assert shown["total"] == 1 and shown["items"][0]["id_masked"] == "04****57"


@pytest.mark.parametrize("role", [Role.BROKER_BACKOFFICE, Role.ISSUER_HOST, Role.AUDITOR])
def test_other_roles_cannot_submit(client: TestClient, platform: Platform, brokers: None, role: Role) -> None:
    response = client.post("/ra/enrolments", json=enrolment_body(), headers=bearer(platform, role, tenant="B001"))
    assert response.status_code == 403


def test_malformed_and_oversized_enrolments(client: TestClient, platform: Platform, brokers: None) -> None:
    headers = {**officer(platform, "B001"), "Content-Type": "application/json"}
    assert client.post("/ra/enrolments", content=b"{oops", headers=headers).json()["error"]["code"] == "malformed_json"
    assert client.post("/ra/enrolments", json={"id_number": "A123456789"}, headers=headers).status_code == 422
    big = enrolment_body(proofing="x" * 2_000_000)
    assert client.post("/ra/enrolments", json=big, headers=headers).status_code == 413
