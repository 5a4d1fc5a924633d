"""An RA officer signs in with a password and enrols an investor, as in production."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from core import accounts
from core.auth import Actor, Role
from core.db import session_scope
from tests.ra.factories import Phone, enrolment_body, latest_activation

PASSWORD = "correct horse battery staple"


def _staff(platform: Platform, username: str, role: Role, tenant: str | None) -> None:
    with session_scope(platform.engine) as session:
        accounts.create_staff_user(session, actor=Actor("ops", Role.OPERATOR), username=username,
                                   password=PASSWORD, role=role, tenant=tenant)


def _login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/auth/token", data={"grant_type": "password", "username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_signed_in_officers_enrol_under_dual_control(client: TestClient, platform: Platform) -> None:
    _staff(platform, "ops", Role.OPERATOR, None)
    operator = _login(client, "ops")
    assert client.post("/ra/brokers", json={"code": "9800", "name": "Example Securities", "dual_control": True},
                       headers=operator).status_code == 201
    _staff(platform, "maker", Role.RA_OFFICER, "9800")
    _staff(platform, "checker", Role.RA_OFFICER, "9800")
    maker, checker = _login(client, "maker"), _login(client, "checker")
    submitted = client.post("/ra/enrolments", json=enrolment_body(), headers=maker).json()
    assert client.post(f"/ra/enrolments/{submitted['enrolment_id']}/approve", headers=maker).status_code == 403
    assert client.post(f"/ra/enrolments/{submitted['enrolment_id']}/approve", headers=checker).status_code == 200
    assert Phone().redeem(client, latest_activation(platform)).status_code == 201
    listed = client.get("/ra/investors?q=A123456789", headers=checker).json()
    assert listed["total"] == 1 and listed["items"][0]["credential"]["status"] == "active"


def test_back_office_client_cannot_act_as_an_ra_officer(client: TestClient, platform: Platform) -> None:
    _staff(platform, "ops", Role.OPERATOR, None)
    client.post("/ra/brokers", json={"code": "9800", "name": "Example Securities"}, headers=_login(client, "ops"))
    from core import api_clients
    with session_scope(platform.engine) as session:
        created = api_clients.create_api_client(session, actor=Actor("ops", Role.OPERATOR), tenant="9800", name="orders")
    token = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": created.client_id,
                                             "client_secret": created.client_secret}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/ra/enrolments", json=enrolment_body(), headers=headers).status_code == 403
    assert client.get("/ra/investors", headers=headers).status_code == 403
