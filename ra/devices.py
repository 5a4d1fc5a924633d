"""The investor's enrolled device and PIN: key parsing, proofs of possession, PIN policy."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
import uuid

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from core.db import UTCDateTime, utcnow
from core.errors import BadRequest, Unauthorized
from ra.models import AppChallenge

CHALLENGE_TTL = dt.timedelta(minutes=2)
_CHALLENGE_ID = re.compile(r"[0-9a-f]{1,64}")
# Built once: challenges are issued and burnt on every signature.
_INSERT_CHALLENGE = insert(AppChallenge)
_CHALLENGE_NONCE = (select(AppChallenge.nonce).where(AppChallenge.id == bindparam("id"))
                    .where(AppChallenge.credential_id == bindparam("credential_id"))
                    .where(AppChallenge.used_at.is_(None))  # type: ignore[union-attr]
                    .where(AppChallenge.expires_at > bindparam("now", type_=UTCDateTime())))
_BURN_CHALLENGE = (
    update(AppChallenge)
    .where(AppChallenge.id == bindparam("challenge_id"))
    .where(AppChallenge.used_at.is_(None))  # type: ignore[union-attr]
    .where(AppChallenge.expires_at > bindparam("now", type_=UTCDateTime()))
    .values(used_at=bindparam("burnt_at", type_=UTCDateTime()))
)
PIN_MIN_LENGTH, PIN_MAX_LENGTH = 6, 12


def load_device_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """A device public key from base64 DER SPKI or PEM; only ECDSA P-256 is accepted."""
    try:
        if encoded.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(encoded.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    except UnsupportedAlgorithm as exc:
        raise BadRequest("the device key must be ECDSA P-256", code="unsupported_device_key") from exc
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadRequest("device_public_key is not a public key", code="malformed_device_key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadRequest("the device key must be ECDSA P-256", code="unsupported_device_key")
    return key


def device_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_device_signature(key_der: bytes, message: bytes, signature_b64: str) -> None:
    """Check an ECDSA/SHA-256 signature (base64 DER) by the device; 401 ``bad_device_proof``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key = serialization.load_der_public_key(key_der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("the enrolled device key is not an EC key")
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise Unauthorized("the device proof does not verify", code="bad_device_proof") from exc


def activation_message(activation_id: str, code: str, device_key: bytes) -> bytes:
    """What the device signs when it redeems an activation code (proves it holds the key)."""
    return b"cloudseal/activate\n" + activation_id.encode() + b"\n" + code.encode() + b"\n" + hashlib.sha256(device_key).digest()


def challenge_message(challenge_id: str, nonce: bytes, action: str, credential_id: str) -> bytes:
    """What the device signs to prove possession for one action on one credential."""
    return b"cloudseal/app\n" + "\n".join((challenge_id, action, credential_id)).encode() + b"\n" + nonce


def issue_challenge(session: Session, credential_id: str) -> AppChallenge:
    """A fresh single-use challenge for ``credential_id`` (caller checks the credential)."""
    challenge = AppChallenge(id=uuid.uuid4().hex, credential_id=credential_id,
                             nonce=secrets.token_bytes(32), expires_at=utcnow() + CHALLENGE_TTL)
    session.connection().execute(_INSERT_CHALLENGE, dict(id=challenge.id, credential_id=credential_id,
                                                         nonce=challenge.nonce, expires_at=challenge.expires_at))
    return challenge


def consume_challenge(session: Session, *, challenge_id: str, credential_id: str, action: str,
                      device_key: bytes, signature_b64: str) -> None:
    """Verify and burn a challenge: it works once, for its credential, before it expires."""
    check_challenge_proof(session, challenge_id=challenge_id, credential_id=credential_id, action=action,
                          device_key=device_key, signature_b64=signature_b64)
    burn_challenge(session, challenge_id)


def check_challenge_proof(reader: Session, *, challenge_id: str, credential_id: str, action: str,
                          device_key: bytes, signature_b64: str) -> None:
    """Verify the device's signature over a challenge of ``credential_id`` for ``action``.

    Only reads: the caller burns the challenge with :func:`burn_challenge` in its write
    transaction, which is what makes it single-use.
    """
    if not _CHALLENGE_ID.fullmatch(challenge_id):
        raise Unauthorized("unknown challenge", code="invalid_challenge")
    nonce = reader.connection().execute(
        _CHALLENGE_NONCE, {"id": challenge_id, "credential_id": credential_id, "now": utcnow()}).scalar_one_or_none()
    if nonce is None:
        raise Unauthorized("unknown challenge", code="invalid_challenge")
    verify_device_signature(device_key, challenge_message(challenge_id, nonce, action, credential_id), signature_b64)


def burn_challenge(session: Session, challenge_id: str) -> None:
    """Mark a verified challenge used; 401 ``invalid_challenge`` if it already was or expired."""
    now = utcnow()
    burned = session.connection().execute(_BURN_CHALLENGE, {"challenge_id": challenge_id, "now": now, "burnt_at": now})
    if burned.rowcount != 1:
        raise Unauthorized("the challenge was already used or has expired", code="invalid_challenge")


def _birth_date_forms(birth_date: dt.date | None) -> set[str]:
    if birth_date is None:
        return set()
    y, m, d = f"{birth_date.year:04d}", f"{birth_date.month:02d}", f"{birth_date.day:02d}"
    roc = f"{birth_date.year - 1911:03d}"  # Minguo year, as Taiwanese dates are often written
    return {y + m + d, y[2:] + m + d, m + d + y[2:], d + m + y[2:], roc + m + d, m + d + y, d + m + y}


def check_pin_policy(pin: str, birth_date: dt.date | None = None) -> None:
    """6–12 digits, not trivial: no single repeated digit, no run up or down, no repeating
    pair or triple, not the holder's birth date. 400 ``weak_pin`` otherwise."""
    if not re.fullmatch(rf"[0-9]{{{PIN_MIN_LENGTH},{PIN_MAX_LENGTH}}}", pin):
        raise BadRequest(f"a PIN is {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH} digits", code="weak_pin")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:])}
    trivial = (
        len(steps) == 1 and steps <= {0, 1, 9}          # 000000, 123456, 987654 (wrapping too)
        or pin == (pin[:2] * len(pin))[:len(pin)]        # 121212
        or pin == (pin[:3] * len(pin))[:len(pin)]        # 123123
        or pin in _birth_date_forms(birth_date)
    )
    if trivial:
        raise BadRequest("this PIN is too easy to guess", code="weak_pin")
