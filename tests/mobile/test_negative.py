"""Every mobile endpoint refuses what it should with a 4xx and the JSON envelope: no token,
a garbled, expired or forged one, another role's, malformed JSON or base64, oversize bodies."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cloudseal.platform import JWT_KEY, Platform
from core.auth import Actor, Role
from mobile_api import web
from mobile_api.client import MobileClient
from tests.conftest import bearer
from tests.mobile.factories import NATIONAL_IDS, activation_for, new_investor

PID, SHA, SUB, DEV = "a" * 32, "b" * 64, "c" * 32, "d" * 64
PROOF = {"challenge_id": "ab12", "device_signature": base64.b64encode(b"x" * 70).decode()}
AUTHENTICATED = [
    ("GET", "/me", None), ("GET", "/me/devices", None), ("GET", f"/me/devices/{DEV}", None),
    ("POST", "/me/pin", {**PROOF, "old_pin": "482916", "new_pin": "739164"}),
    ("POST", "/me/revoke", {**PROOF, "pin": "482916"}), ("POST", "/me/renew", {**PROOF, "pin": "482916"}),
    ("POST", "/auth/logout", None), ("GET", "/inbox", None), ("GET", "/meetings", None),
    ("GET", f"/meetings/{PID}", None), ("GET", f"/meetings/{PID}/result", None),
    ("POST", f"/meetings/{PID}/ballots/prepare", {"choices": {"1": "CFOR"}}),
    ("POST", f"/meetings/{PID}/revocation/prepare", {}),
    ("POST", f"/submissions/{SUB}", {"pin": "482916", "device_signature": PROOF["device_signature"]}),
    ("GET", "/ballots", None), ("GET", f"/meetings/{PID}/ballots/{SHA}", None),
    ("GET", f"/meetings/{PID}/ballots/{SHA}/proof", None), ("GET", "/receipts", None),
]
PUBLIC_POSTS = [
    ("/activation/redeem", {"activation_id": "ab", "code": "X", "device_public_key": "MFkw", "device_signature": "MEU=",
                            "pin": "482916"}),
    ("/auth/challenge", {"credential_id": "ab"}),
    ("/auth/login", {"credential_id": "ab", **PROOF}),
    ("/auth/refresh", {"refresh_token": "nope"}),
]
BODIES = [(m, p, b) for m, p, b in AUTHENTICATED if b is not None] + [("POST", p, b) for p, b in PUBLIC_POSTS]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forged_tokens(platform: Platform, app: MobileClient) -> dict[str, tuple[str, int, str]]:
    """Tokens the API must refuse: name -> (Authorization header, status, code)."""
    good = app.headers()["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})
    pem = platform.jwt_public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64url(
        json.dumps(claims).encode())
    hs256 = signing_input + "." + _b64url(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    issuer = web.token_issuer(app.http.app)  # type: ignore[attr-defined]
    expired = issuer.access_token(reference=claims["sub"], credential_id=claims["cid"], device=claims["dev"],
                                  family_id=claims["sid"], now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    stranger = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    staff_audience = platform.mint_token(Actor(subject=claims["sub"], role=Role.INVESTOR))
    return {
        "missing": ("", 401, "missing_token"),
        "basic": ("Basic YWxpY2U6c2VjcmV0", 401, "missing_token"),
        "garbled": ("Bearer not.a.jwt", 401, "invalid_token"),
        "truncated": ("Bearer " + good[:-10], 401, "invalid_token"),
        "expired": ("Bearer " + expired, 401, "token_expired"),
        "alg_none": ("Bearer " + jwt.encode(claims, None, algorithm="none"), 401, "invalid_token"),
        "hs256_with_public_key": ("Bearer " + hs256, 401, "invalid_token"),
        "another_key": ("Bearer " + stranger, 401, "invalid_token"),
        "staff_audience_investor": ("Bearer " + staff_audience, 401, "invalid_token"),
        "operator": (bearer(platform)["Authorization"], 403, "forbidden_role"),
        "ra_officer": (bearer(platform, Role.RA_OFFICER, tenant="B001")["Authorization"], 403, "forbidden_role"),
    }


def test_every_authenticated_endpoint_refuses_missing_forged_expired_and_staff_tokens(
        client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    for name, (header, status, code) in forged_tokens(platform, alice).items():
        for method, path, body in AUTHENTICATED:
            headers = {"Authorization": header} if header else {}
            answer = client.request(method, "/mobile/v1" + path, json=body, headers=headers)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (name, method, path)
    assert alice.me()["investor_reference"] == alice.investor_reference  # the real token still works


def test_mobile_tokens_are_refused_by_the_staff_routers(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    answer = client.get("/auth/me", headers=alice.headers())
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(("method", "path", "body"), BODIES, ids=[p for _, p, _ in BODIES])
def test_malformed_json_extra_fields_and_oversize_bodies_are_refused(client: TestClient, platform: Platform,
                                                                    method: str, path: str, body: dict) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    url, headers = "/mobile/v1" + path, {**alice.headers(), "Content-Type": "application/json"}
    cases = [(b"{nope", 400, "malformed_json"), (b"[1, 2", 400, "malformed_json"),
             (json.dumps({**body, "surprise": 1}).encode(), 422, "validation_error"),
             (b'"just a string"', 422, "validation_error"),
             (b'{"x": "' + b"A" * 70_000 + b'"}', 413, "body_too_large"),
             (b"A" * 1_100_000, 413, "body_too_large")]
    for content, status, code in cases:
        answer = client.request(method, url, content=content, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (path, content[:20])


def test_malformed_base64_ids_and_cursors_get_4xx(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    checks = [
        ("POST", "/auth/login", {"credential_id": alice.credential_id, "challenge_id": "ab12",
                                 "device_signature": "!!not base64!!"}, None, 401, "invalid_challenge"),
        ("POST", "/activation/redeem", {**PUBLIC_POSTS[0][1], "activation_id": "0" * 16}, None, 404,
         "unknown_activation"),
        ("POST", f"/submissions/{SUB}", {"pin": "482916", "device_signature": "%%%"}, alice.headers(), 404,
         "unknown_submission"),
        ("GET", "/meetings?cursor=@@@", None, alice.headers(), 400, "invalid_cursor"),
        ("GET", "/inbox?since=" + _b64url(b"x:1"), None, alice.headers(), 400, "invalid_cursor"),
        ("GET", "/ballots?limit=0", None, alice.headers(), 422, "validation_error"),
        ("GET", "/meetings?when=tomorrow", None, alice.headers(), 422, "validation_error"),
        ("GET", "/meetings/NOT-A-MEETING", None, alice.headers(), 422, "validation_error"),
        ("GET", f"/meetings/{PID}/ballots/xyz", None, alice.headers(), 422, "validation_error"),
        ("GET", f"/me/devices/{DEV[:10]}", None, alice.headers(), 422, "validation_error"),
        ("POST", "/auth/challenge", {"credential_id": "f" * 64}, None, 404, "unknown_credential"),
        ("POST", "/auth/refresh", {"refresh_token": "x" * 43}, None, 401, "invalid_refresh_token"),
        ("GET", "/nowhere", None, alice.headers(), 404, "not_found"),
        ("DELETE", "/me", None, alice.headers(), 405, "method_not_allowed"),
    ]
    for method, path, body, headers, status, code in checks:
        answer = client.request(method, "/mobile/v1" + path, json=body, headers=headers or {})
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), path
    proof = client.post("/mobile/v1/auth/challenge", json={"credential_id": alice.credential_id}).json()
    bad = client.post("/mobile/v1/auth/login", json={"credential_id": alice.credential_id,
                                                     "challenge_id": proof["challenge_id"],
                                                     "device_signature": "!!not base64!!"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_device_proof"
    activation = activation_for(client, platform, NATIONAL_IDS[1])
    for device_key, code in (("%%%", "malformed_device_key"), (base64.b64encode(b"junk").decode(), "malformed_device_key")):
        key = client.post("/mobile/v1/activation/redeem", json={
            "activation_id": activation["activation_id"], "code": activation["code"], "device_public_key": device_key,
            "device_signature": "MEUCIQ==", "pin": "482916"})
        assert key.status_code == 400 and key.json()["error"]["code"] == code
    wrong_code = client.post("/mobile/v1/activation/redeem", json={
        "activation_id": activation["activation_id"], "code": "WRONGCODE", "device_public_key": "MFkw",
        "device_signature": "MEUCIQ==", "pin": "482916"})
    assert wrong_code.status_code == 400 and wrong_code.json()["error"]["code"] == "invalid_activation_code"


def test_the_public_trust_material_needs_no_token_and_the_jwt_key_is_the_platforms(client: TestClient,
                                                                                   platform: Platform) -> None:
    trust = client.get("/mobile/v1/pki")
    assert trust.status_code == 200 and trust.json()["seals"] and trust.json()["root"].startswith("-----BEGIN")
    assert web.JWT_KEY == JWT_KEY
