"""The sign-in endpoints over HTTP: /auth/token, /auth/revoke, /auth/me."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from cloudseal.platform import JWT_KEY, Platform
from core import accounts, api_clients
from core.auth import Actor, Role, issue_token
from core.db import session_scope
from core.models import AuditEvent
from hsm_sim.facade import hsm_private_key
from tests.conftest import bearer

OPERATOR = Actor(subject="root", role=Role.OPERATOR)
PASSWORD = "Tr0ub4dor&3-but-longer"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with parameters cheap enough for many logins per test."""
    monkeypatch.setattr(accounts, "PASSWORD_HASHER",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def add_user(platform: Platform, username: str = "alice", role: Role = Role.RA_OFFICER,
             tenant: str | None = "9800") -> None:
    with session_scope(platform.engine) as session:
        accounts.create_staff_user(session, actor=OPERATOR, username=username, password=PASSWORD,
                                   role=role, tenant=tenant)


def add_client(platform: Platform, tenant: str = "9800") -> api_clients.NewApiClient:
    with session_scope(platform.engine) as session:
        return api_clients.create_api_client(session, actor=OPERATOR, tenant=tenant, name="orders")


def password_grant(client: TestClient, password: str = PASSWORD, username: str = "alice") -> httpx.Response:
    return client.post("/auth/token", data={"grant_type": "password", "username": username,
                                            "password": password})


def refresh_grant(client: TestClient, token: str) -> httpx.Response:
    return client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token})


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def me(client: TestClient, token: str) -> httpx.Response:
    return client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def audit_rows(platform: Platform) -> list[AuditEvent]:
    with Session(platform.engine) as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A JWT assembled by hand (PyJWT rightly refuses to build these)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest() if hmac_key else b""
    return f"{signing_input}.{b64url(signature)}"


def operator_claims(platform: Platform) -> dict[str, Any]:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    return {"iss": platform.token_issuer, "aud": platform.settings.jwt_audience, "sub": "mallory",
            "role": "operator", "iat": now, "nbf": now, "exp": now + 600}


# Password grant and refresh ------------------------------------------------------------

def test_password_login_gives_tokens_that_name_the_user(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    response = password_grant(client)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert (body["role"], body["tenant"]) == ("ra_officer", "9800") and body["refresh_token"]
    assert response.headers["cache-control"] == "no-store"
    assert me(client, body["access_token"]).json() == {"subject": "alice", "role": "ra_officer",
                                                       "tenant": "9800"}


def test_operator_token_has_no_tenant(client: TestClient, platform: Platform) -> None:
    add_user(platform, "root", Role.OPERATOR, None)
    body = password_grant(client, username="root").json()
    assert body["tenant"] is None and me(client, body["access_token"]).json()["role"] == "operator"


def test_refresh_rotates_the_pair(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    first = password_grant(client).json()
    second = refresh_grant(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert me(client, second.json()["access_token"]).json()["subject"] == "alice"


def test_reusing_a_rotated_refresh_token_revokes_the_family(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    first = password_grant(client).json()["refresh_token"]
    newest = refresh_grant(client, first).json()["refresh_token"]
    replay = refresh_grant(client, first)
    assert replay.status_code == 401 and error_code(replay) == "invalid_grant"
    assert error_code(refresh_grant(client, newest)) == "invalid_grant"


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    wrong = password_grant(client, "not-the-password")
    unknown = password_grant(client, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert error_code(wrong) == "invalid_grant"


def test_locked_account(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    codes = [error_code(password_grant(client, "not-the-password")) for _ in range(10)]
    assert codes == ["invalid_grant"] * 9 + ["account_locked"]
    locked = password_grant(client)
    assert locked.status_code == 401 and error_code(locked) == "account_locked"


def test_inactive_user(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    refresh_token = password_grant(client).json()["refresh_token"]
    with session_scope(platform.engine) as session:
        accounts.deactivate_staff_user(session, actor=OPERATOR, username="alice")
    assert error_code(password_grant(client)) == "account_disabled"
    assert error_code(password_grant(client, "not-the-password")) == "invalid_grant"
    assert error_code(refresh_grant(client, refresh_token)) == "invalid_grant"


def test_revoke_ends_the_session_and_always_answers_200(client: TestClient, platform: Platform) -> None:
    add_user(platform)
    refresh_token = password_grant(client).json()["refresh_token"]
    assert client.post("/auth/revoke", data={"token": refresh_token}).status_code == 200
    assert client.post("/auth/revoke", data={"token": refresh_token}).status_code == 200
    assert client.post("/auth/revoke", data={"token": "never-issued"}).status_code == 200
    assert error_code(refresh_grant(client, refresh_token)) == "invalid_grant"


# Client credentials --------------------------------------------------------------------

def test_client_credentials_in_the_form(client: TestClient, platform: Platform) -> None:
    created = add_client(platform)
    response = client.post("/auth/token", data={
        "grant_type": "client_credentials", "client_id": created.client_id,
        "client_secret": created.client_secret})
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert (body["role"], body["tenant"]) == ("broker_backoffice", "9800")
    assert me(client, body["access_token"]).json() == {
        "subject": f"client:{created.client_id}", "role": "broker_backoffice", "tenant": "9800"}


def test_client_credentials_with_http_basic(client: TestClient, platform: Platform) -> None:
    created = add_client(platform)
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           auth=(created.client_id, created.client_secret))
    assert response.status_code == 200 and response.json()["tenant"] == "9800"


def test_wrong_client_secret_with_basic_gets_a_challenge(client: TestClient, platform: Platform) -> None:
    created = add_client(platform)
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           auth=(created.client_id, "wrong"))
    assert response.status_code == 401 and error_code(response) == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_revoked_client_is_refused(client: TestClient, platform: Platform) -> None:
    created = add_client(platform)
    with session_scope(platform.engine) as session:
        api_clients.revoke_api_client(session, actor=OPERATOR, client_id=created.client_id)
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           auth=(created.client_id, created.client_secret))
    assert response.status_code == 401 and error_code(response) == "invalid_client"


def test_client_authenticated_two_ways_at_once_is_refused(client: TestClient, platform: Platform) -> None:
    created = add_client(platform)
    response = client.post("/auth/token", auth=(created.client_id, created.client_secret), data={
        "grant_type": "client_credentials", "client_secret": created.client_secret})
    assert response.status_code == 400 and error_code(response) == "invalid_request"


# Malformed requests --------------------------------------------------------------------

def test_unsupported_grant_type(client: TestClient) -> None:
    response = client.post("/auth/token", data={"grant_type": "implicit"})
    assert response.status_code == 400 and error_code(response) == "unsupported_grant_type"


@pytest.mark.parametrize("data", [
    {},
    {"grant_type": "password", "username": "alice"},
    {"grant_type": "refresh_token"},
    {"grant_type": "client_credentials", "client_id": "bc_x"},
])
def test_missing_fields_are_invalid_request(client: TestClient, data: dict[str, str]) -> None:
    response = client.post("/auth/token", data=data)
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_json_body_is_not_a_form(client: TestClient) -> None:
    response = client.post("/auth/token", json={"grant_type": "password", "username": "alice",
                                                "password": PASSWORD})
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_garbled_form_and_oversized_fields_stay_in_the_envelope(client: TestClient) -> None:
    garbled = client.post("/auth/token", content=b"%%%&&&=\xff\xfe",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert garbled.status_code == 400 and error_code(garbled) == "invalid_request"
    oversized = client.post("/auth/token", data={"grant_type": "password", "username": "a" * 300,
                                                 "password": PASSWORD})
    assert oversized.status_code == 422 and error_code(oversized) == "validation_error"
    basic = client.post("/auth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": "Basic not*base64"})
    assert basic.status_code == 401 and error_code(basic) == "invalid_client"


def test_repeated_form_parameters_are_refused(client: TestClient) -> None:
    response = client.post("/auth/token", content=b"grant_type=password&grant_type=client_credentials",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and error_code(response) == "invalid_request"


# Access token checks on /auth/me -------------------------------------------------------

def test_me_needs_a_token(client: TestClient) -> None:
    response = client.get("/auth/me")
    assert response.status_code == 401 and error_code(response) == "missing_token"


def test_me_refuses_alg_none(client: TestClient, platform: Platform) -> None:
    token = forge({"alg": "none", "typ": "JWT"}, operator_claims(platform))
    assert error_code(me(client, token)) == "invalid_token"


def test_me_refuses_hs256_forged_with_the_public_key(client: TestClient, platform: Platform) -> None:
    for encoding in (Encoding.PEM, Encoding.DER):
        public = platform.jwt_public_key().public_bytes(encoding, PublicFormat.SubjectPublicKeyInfo)
        token = forge({"alg": "HS256", "typ": "JWT"}, operator_claims(platform), public)
        response = me(client, token)
        assert response.status_code == 401 and error_code(response) == "invalid_token"


def test_me_refuses_an_expired_token(client: TestClient, platform: Platform) -> None:
    headers = bearer(platform, ttl=dt.timedelta(minutes=-10))
    response = client.get("/auth/me", headers=headers)
    assert response.status_code == 401 and error_code(response) == "token_expired"


def test_me_refuses_a_token_for_another_audience(client: TestClient, platform: Platform) -> None:
    key = hsm_private_key(platform.keystore, *JWT_KEY)
    token = issue_token(key, actor=Actor(subject="alice", role=Role.OPERATOR),  # type: ignore[arg-type]
                        issuer=platform.token_issuer, audience="another-service",
                        ttl=dt.timedelta(minutes=5))
    assert error_code(me(client, token)) == "invalid_token"


# Secrets stay secret ---------------------------------------------------------------------

def test_passwords_and_secrets_never_appear_in_responses_or_the_audit_log(
        client: TestClient, platform: Platform) -> None:
    add_user(platform)
    created = add_client(platform)
    wrong_guess = "Guessing-Hunter2-Password"
    responses = [password_grant(client, wrong_guess), password_grant(client, wrong_guess, "ghost")]
    good = password_grant(client)
    refresh_token = good.json()["refresh_token"]
    rotated = refresh_grant(client, refresh_token)
    responses += [good, rotated,
                  client.post("/auth/revoke", data={"token": rotated.json()["refresh_token"]}),
                  refresh_grant(client, refresh_token),
                  client.post("/auth/token", data={"grant_type": "client_credentials"},
                              auth=(created.client_id, created.client_secret)),
                  client.post("/auth/token", data={"grant_type": "client_credentials",
                                                   "client_id": created.client_id,
                                                   "client_secret": wrong_guess})]
    secrets = [PASSWORD, wrong_guess, created.client_secret, refresh_token,
               rotated.json()["refresh_token"]]
    for response in responses:
        assert not any(secret in response.text for secret in (PASSWORD, wrong_guess, created.client_secret))
    rows = audit_rows(platform)
    assert {(r.action, r.outcome) for r in rows} >= {
        ("staff.login", "failure"), ("staff.login", "success"), ("staff.session.refresh", "failure"),
        ("api_client.authenticate", "failure"), ("api_client.authenticate", "success"),
        ("staff.session.revoke", "success")}
    stored = "\n".join(f"{r.actor} {r.tenant} {r.object_id} {r.details}" for r in rows)
    assert not any(secret in stored for secret in secrets)


def test_the_openapi_document_describes_the_token_form(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
    assert {"400", "401"} <= set(operation["responses"])
