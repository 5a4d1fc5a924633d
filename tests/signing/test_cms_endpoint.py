"""POST /signing/cms: one call from PIN + device proof to a CMS that openssl accepts."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from core.db import session_scope
from ra import devices
from core.auth import Actor, Role
from signing import evidence, service
from signing.cms import parse_detached_cms, signed_attributes_digest
from tests.interop.conftest import require_tool
from tests.ra.factories import Phone, create_broker, enrol_and_activate

ORDER = b'{"order": 42, "side": "buy", "symbol": "2330", "quantity": 1000}'


def _proof(client: TestClient, phone: Phone, digest: bytes, algorithm: str = "sha256") -> dict[str, str]:
    challenge = client.post("/ra/app/challenges", json={"credential_id": phone.credential_id}).json()
    message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                        service.authorization_action(algorithm, [digest]), phone.credential_id or "")
    return {"challenge_id": challenge["challenge_id"], "device_signature": phone.sign(message)}


def _sign(client: TestClient, phone: Phone, document: bytes = ORDER, pin: str = "482916"):
    digest = hashlib.sha256(document).digest()
    return client.post("/signing/cms", json={"credential_id": phone.credential_id, "pin": pin,
                                             "digest": base64.b64encode(digest).decode(), "purpose": "order",
                                             **_proof(client, phone, digest)})


def _openssl_accepts(client: TestClient, der: bytes, tmp_path: Path) -> None:
    """`openssl cms -verify` accepts ``der`` as the detached signature of ORDER under /pki/chain.pem."""
    (tmp_path / "order.json").write_bytes(ORDER)
    (tmp_path / "order.cms").write_bytes(der)
    (tmp_path / "chain.pem").write_bytes(client.get("/pki/chain.pem").content)
    result = subprocess.run([require_tool("openssl"), "cms", "-verify", "-binary", "-inform", "DER",
                             "-in", str(tmp_path / "order.cms"), "-content", str(tmp_path / "order.json"),
                             "-CAfile", str(tmp_path / "chain.pem"), "-out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Verification successful" in result.stderr, result.stderr


def test_openssl_cms_verify_accepts_the_signed_order(client: TestClient, platform: Platform, tmp_path: Path) -> None:
    create_broker(client, platform, "B001")
    _, phone = enrol_and_activate(client, platform)
    response = _sign(client, phone)
    assert response.status_code == 200, response.text
    der = base64.b64decode(response.json()["cms"])
    _openssl_accepts(client, der, tmp_path)
    parsed = parse_detached_cms(der)
    assert parsed.message_digest == hashlib.sha256(ORDER).digest()
    with session_scope(platform.engine) as session:  # the log holds the digest the HSM signed
        records = service.signatures_of(session, signed_attributes_digest(parsed.signed_attributes, "sha256"))
    assert len(records) == 1 and records[0].purpose == "order"


def test_an_rsa_credential_gets_a_pkcs1_cms_that_openssl_and_the_verifier_accept(
        client: TestClient, platform: Platform, tmp_path: Path) -> None:
    create_broker(client, platform, "B001")
    _, phone = enrol_and_activate(client, platform, key_algorithm="RSA_2048")
    response = _sign(client, phone)
    assert response.status_code == 200, response.text
    der = base64.b64decode(response.json()["cms"])
    assert parse_detached_cms(der).signature_algorithm == "RSA_PKCS1V15"
    _openssl_accepts(client, der, tmp_path)
    with session_scope(platform.engine) as session:
        outcome, _ = evidence.verify_for_broker(session, platform.pki, actor=Actor("bo", Role.BROKER_BACKOFFICE, "B001"),
                                                cms=der, content=ORDER)
    assert outcome.valid and outcome.logged and outcome.signing_time_source == "platform_log", outcome


def test_cms_signing_refuses_a_wrong_pin_and_a_foreign_proof(client: TestClient, platform: Platform) -> None:
    create_broker(client, platform, "B001")
    _, phone = enrol_and_activate(client, platform)
    wrong = _sign(client, phone, pin="000111")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "wrong_pin"
    digest = hashlib.sha256(ORDER).digest()
    other = _proof(client, phone, hashlib.sha256(b"another order").digest())
    response = client.post("/signing/cms", json={"credential_id": phone.credential_id, "pin": "482916",
                                                 "digest": base64.b64encode(digest).decode(), **other})
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_device_proof"
    garbage = client.post("/signing/cms", json={"credential_id": phone.credential_id, "pin": "482916",
                                                "digest": "!!!", **_proof(client, phone, digest)})
    assert garbage.status_code == 400
