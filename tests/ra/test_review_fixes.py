"""Shared-RA abuse cases: identity squatting, leaks across brokers, dead ends, hostile input."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope
from ra.models import ActivationCode, Credential, OutboxMessage
from tests.conftest import bearer
from tests.ra.factories import Phone, create_broker, enrol_and_activate, enrolment_body, latest_activation, officer


def _submit(client: TestClient, platform: Platform, broker: str, **overrides: object) -> dict:
    response = client.post("/ra/enrolments", json=enrolment_body(**overrides), headers=officer(platform, broker))
    assert response.status_code == 201, response.text
    return response.json()


def _approve(client: TestClient, platform: Platform, broker: str, enrolment_id: int, name: str = "olivia"):
    return client.post(f"/ra/enrolments/{enrolment_id}/approve", headers=officer(platform, broker, name))


def test_an_unapproved_submission_cannot_capture_the_identity(client: TestClient, platform: Platform,
                                                               brokers: None) -> None:
    squatter = _submit(client, platform, "B001", name="Made Up", contact_channel="sms:+886900000666")
    proofed = _submit(client, platform, "B002", contact_channel="sms:+886912345678")
    assert _approve(client, platform, "B002", proofed["enrolment_id"]).status_code == 200
    with session_scope(platform.engine) as session:
        message = session.execute(select(OutboxMessage).where(OutboxMessage.kind == "activation_code")).scalar_one()
    assert message.recipient == "sms:+886912345678"
    late = _approve(client, platform, "B001", squatter["enrolment_id"])
    assert late.status_code == 409 and late.json()["error"]["code"] == "identity_mismatch"


def test_a_second_broker_linking_tells_the_investor(client: TestClient, platform: Platform, brokers: None) -> None:
    enrol_and_activate(client, platform)
    second = _submit(client, platform, "B002", accounts=["B2-7"])
    assert _approve(client, platform, "B002", second["enrolment_id"]).json()["status"] == "linked"
    with session_scope(platform.engine) as session:
        kinds = session.execute(select(OutboxMessage.kind)).scalars().all()
    assert "broker_linked" in kinds


def test_an_outstanding_code_means_a_second_broker_only_links(client: TestClient, platform: Platform,
                                                              brokers: None) -> None:
    first = _submit(client, platform, "B001")
    _approve(client, platform, "B001", first["enrolment_id"])
    second = _submit(client, platform, "B002", accounts=["B2-8"])
    approved = _approve(client, platform, "B002", second["enrolment_id"])
    assert approved.json()["status"] == "linked" and approved.json()["activation_code_sent"] is False
    with session_scope(platform.engine) as session:
        assert len(session.execute(select(ActivationCode)).scalars().all()) == 1


def test_search_by_another_brokers_account_number_finds_nothing(client: TestClient, platform: Platform,
                                                                brokers: None) -> None:
    enrol_and_activate(client, platform, accounts=["A-1"])
    second = _submit(client, platform, "B002", accounts=["SECRET-B-42"])
    _approve(client, platform, "B002", second["enrolment_id"])
    assert client.get("/ra/investors?q=SECRET-B-42", headers=officer(platform, "B001")).json()["total"] == 0
    assert client.get("/ra/investors?q=SECRET-B-42", headers=officer(platform, "B002")).json()["total"] == 1
    assert client.get("/ra/investors?q=A123456789", headers=officer(platform, "B003")).json()["total"] == 0


def test_the_ca_endpoints_leave_ra_managed_credentials_alone(client: TestClient, platform: Platform,
                                                             brokers: None) -> None:
    enrol_and_activate(client, platform)
    with session_scope(platform.engine) as session:
        serial = session.execute(select(Credential.certificate_serial)).scalar_one()
    response = client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "keyCompromise"}, headers=bearer(platform))
    assert response.status_code == 409 and response.json()["error"]["code"] == "managed_by_ra"


def test_an_expired_code_can_be_reissued_and_only_the_new_one_works(client: TestClient, platform: Platform,
                                                                    brokers: None) -> None:
    enrolment = _submit(client, platform, "B001")
    _approve(client, platform, "B001", enrolment["enrolment_id"])
    old = latest_activation(platform)
    with session_scope(platform.engine) as session:
        session.execute(update(ActivationCode).values(attempts=5))
    assert Phone().redeem(client, old).json()["error"]["code"] == "activation_locked"
    reissued = client.post(f"/ra/enrolments/{enrolment['enrolment_id']}/reissue-code", headers=officer(platform, "B001"))
    assert reissued.status_code == 200, reissued.text
    new = latest_activation(platform)
    assert new["activation_id"] != old["activation_id"]
    assert Phone().redeem(client, old).status_code == 404
    assert Phone().redeem(client, new).status_code == 201


def test_the_code_leaves_the_outbox_once_redeemed(client: TestClient, platform: Platform, brokers: None) -> None:
    enrol_and_activate(client, platform)
    with session_scope(platform.engine) as session:
        secrets = session.execute(select(OutboxMessage.secret)).scalars().all()
        payloads = session.execute(select(OutboxMessage.payload)).scalars().all()
    assert secrets == [None]
    assert all("code" not in p for p in payloads)


def test_failed_attempts_and_refusals_are_audited(client: TestClient, platform: Platform, brokers: None) -> None:
    dual = _submit(client, platform, "B003")
    assert _approve(client, platform, "B003", dual["enrolment_id"]).status_code == 403
    assert _approve(client, platform, "B001", dual["enrolment_id"]).status_code == 404
    _, phone = enrol_and_activate(client, platform, id_number="F131104093")
    client.post("/ra/app/renew", json={**phone.proof(client, "renew"), "pin": "000111"})
    enrolment = _submit(client, platform, "B001", id_number="A800000014", accounts=["X-9"])
    _approve(client, platform, "B001", enrolment["enrolment_id"])
    client.post("/ra/activation/redeem", json=Phone().redeem_body(latest_activation(platform), code="WRONG-CODE-0000"))
    with session_scope(platform.engine) as session:
        failures = session.execute(text(
            "SELECT action, details FROM audit_event WHERE outcome = 'failure' ORDER BY seq")).all()
    reasons = [(a, d) for a, d in failures]
    assert any(a == "enrolment.approve" and "self_approval" in d for a, d in reasons)
    assert any(a == "enrolment.approve" and "unknown_enrolment" in d for a, d in reasons)
    assert any(a == "credential.pin_check" for a, _ in reasons)
    assert any(a == "activation.redeem" and "invalid_activation_code" in d for a, d in reasons)


@pytest.fixture
def any_client(any_platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform=any_platform, background_refresh=False)) as test_client:
        create_broker(test_client, any_platform, "B001")
        yield test_client


def test_hostile_input_gets_4xx_on_every_backend(any_client: TestClient, any_platform: Platform) -> None:
    headers = officer(any_platform, "B001")
    nul_bodies = [enrolment_body(name="Lin\u0000"), enrolment_body(contact_channel="sms:\u0000"),
                  enrolment_body(accounts=["A\u0000"]), enrolment_body(proofing="bad\u0000"),
                  enrolment_body(accounts=["9" * 33]), enrolment_body(birth_date="2999-01-01"),
                  enrolment_body(name="   ")]
    for body in nul_bodies:
        assert any_client.post("/ra/enrolments", json=body, headers=headers).status_code == 422
    for path in ("/ra/investors/9223372036854775808", "/ra/enrolments/99999999999999999999",
                 "/ra/investors?offset=10000000000000000000", "/ra/investors?q=a%00b", "/ra/brokers/B%00"):
        status = any_client.get(path, headers=headers).status_code
        assert 400 <= status < 500, path
    assert any_client.post("/ra/enrolments/99999999999999999999/approve", headers=headers).status_code == 422
    assert any_client.post("/ra/app/challenges", json={"credential_id": "ab\u0000"}).status_code == 422
    assert any_client.post("/auth/token", data={"grant_type": "password", "username": "a\x00b",
                                                "password": "x" * 12}).status_code == 400
    assert any_client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "bc_\x00",
                                                "client_secret": "s"}).status_code == 400


def test_device_key_of_an_unknown_algorithm_is_400(client: TestClient, platform: Platform, brokers: None) -> None:
    enrolment = _submit(client, platform, "B001")
    _approve(client, platform, "B001", enrolment["enrolment_id"])
    body = Phone().redeem_body(latest_activation(platform))
    body["device_public_key"] = base64.b64encode(bytes.fromhex("300f300506032a03040303000102")).decode()
    response = client.post("/ra/activation/redeem", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"unsupported_device_key", "malformed_device_key"}


def test_ca_only_revocation_reasons_are_refused(client: TestClient, platform: Platform, brokers: None) -> None:
    investor_id, _ = enrol_and_activate(client, platform)
    response = client.post(f"/ra/investors/{investor_id}/revoke", json={"reason": "cACompromise"},
                           headers=officer(platform, "B001"))
    assert response.status_code == 422


def test_officers_list_their_pending_enrolments_and_reject_one(client: TestClient, platform: Platform,
                                                               brokers: None) -> None:
    mine = _submit(client, platform, "B001")
    _submit(client, platform, "B002", id_number="F131104093")
    pending = client.get("/ra/enrolments?status=pending", headers=officer(platform, "B001")).json()
    assert [e["enrolment_id"] for e in pending] == [mine["enrolment_id"]]
    rejected = client.post(f"/ra/enrolments/{mine['enrolment_id']}/reject", json={"reason": "ID card expired"},
                           headers=officer(platform, "B001"))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert _approve(client, platform, "B001", mine["enrolment_id"]).json()["error"]["code"] == "not_pending"


def test_the_upkeep_wipes_codes_that_expired_unredeemed(client: TestClient, platform: Platform, brokers: None) -> None:
    from ra.service import wipe_stale_codes

    enrolment = _submit(client, platform, "B001")
    _approve(client, platform, "B001", enrolment["enrolment_id"])
    with session_scope(platform.engine) as session:
        session.execute(update(ActivationCode).values(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
    with session_scope(platform.engine) as session:
        assert wipe_stale_codes(session) == 1
        assert session.execute(select(OutboxMessage.secret)).scalars().all() == [None]
