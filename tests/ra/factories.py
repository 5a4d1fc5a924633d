"""RA test helpers: brokers, officers' headers, and a phone that holds a device key."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope
from ra import devices
from ra import secrets as ra_secrets
from ra.models import OutboxMessage
from tests.conftest import bearer

# Valid Taiwan national IDs (check digit correct) for test investors.
NATIONAL_IDS = ["A123456789", "F131104093", "A800000014", "B120863158", "Q221453981", "H100000008",
                "E204172237", "K123456788", "M287654325", "T111222331"]


def officer(platform: Platform, broker: str, name: str = "olivia") -> dict[str, str]:
    return bearer(platform, Role.RA_OFFICER, subject=name, tenant=broker)


def create_broker(client: TestClient, platform: Platform, code: str, dual_control: bool = False) -> None:
    response = client.post("/ra/brokers", json={"code": code, "name": f"Broker {code}", "dual_control": dual_control},
                           headers=bearer(platform))
    assert response.status_code == 201, response.text


def enrolment_body(id_number: str = "A123456789", accounts: list[str] | None = None, **overrides: object) -> dict:
    body = {"id_kind": "national_id", "id_number": id_number, "name": "Chen Mei-Ling", "birth_date": "1980-05-17",
            "contact_channel": "sms:+886912345678", "accounts": accounts or ["1234567"],
            "proofing": "ID card checked in branch"}
    body.update(overrides)
    return body


def latest_activation(platform: Platform) -> dict[str, str]:
    """What the delivery worker would send: read from the outbox, as the test of delivery."""
    with session_scope(platform.engine) as session:
        message = session.execute(select(OutboxMessage).where(OutboxMessage.kind == "activation_code")
                                  .order_by(OutboxMessage.id.desc()).limit(1)).scalar_one()
        return {**json.loads(message.payload), "code": message.secret}


@dataclass
class Phone:
    """The investor's app: an in-memory P-256 device key, like the mobile client."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: str | None = None

    @property
    def public_der(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()

    def redeem_body(self, activation: dict[str, str], pin: str = "482916", code: str | None = None) -> dict:
        code = code or activation["code"]
        message = devices.activation_message(activation["activation_id"], ra_secrets.normalise_code(code), self.public_der)
        return {"activation_id": activation["activation_id"], "code": code,
                "device_public_key": base64.b64encode(self.public_der).decode(),
                "device_signature": self.sign(message), "pin": pin}

    def redeem(self, client: TestClient, activation: dict[str, str], pin: str = "482916"):
        response = client.post("/ra/activation/redeem", json=self.redeem_body(activation, pin))
        if response.status_code == 201:
            self.credential_id = response.json()["credential_id"]
        return response

    def proof(self, client: TestClient, action: str) -> dict[str, str]:
        challenge = client.post("/ra/app/challenges", json={"credential_id": self.credential_id}).json()
        nonce = base64.b64decode(challenge["nonce"])
        message = devices.challenge_message(challenge["challenge_id"], nonce, action, self.credential_id or "")
        return {"credential_id": self.credential_id or "", "challenge_id": challenge["challenge_id"],
                "device_signature": self.sign(message)}


def enrol_and_activate(client: TestClient, platform: Platform, *, broker: str = "B001", id_number: str = "A123456789",
                       accounts: list[str] | None = None, pin: str = "482916",
                       key_algorithm: str = "EC_P256") -> tuple[int, Phone]:
    """The whole enrolment: submit, approve, redeem. Returns the investor id and the phone."""
    headers = officer(platform, broker)
    submitted = client.post("/ra/enrolments", json={**enrolment_body(id_number, accounts), "key_algorithm": key_algorithm},
                            headers=headers)
    assert submitted.status_code == 201, submitted.text
    approved = client.post(f"/ra/enrolments/{submitted.json()['enrolment_id']}/approve", headers=headers)
    assert approved.status_code == 200, approved.text
    phone = Phone()
    redeemed = phone.redeem(client, latest_activation(platform), pin)
    assert redeemed.status_code == 201, redeemed.text
    return approved.json()["investor_id"], phone
