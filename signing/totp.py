"""TOTP as the second factor for generic CSC clients (RFC 6238: 6 digits, 30 s, SHA-1).

The per-credential TOTP secret is derived inside the HSM (HMAC-SHA256 under ``signing/totp``
over the credential id and a stored salt), shown once at enrolment for the authenticator
app, and re-derived for each check: the database alone cannot produce codes. A code is
accepted in the current step or one step either side, and only once: the last accepted
step moves forward with a conditional UPDATE, so a replayed code fails even under races.
"""

from __future__ import annotations

import base64
import re
import secrets
import time

import pyotp
from sqlalchemy import select, update
from sqlmodel import Session

from core import audit
from core.db import utcnow
from core.errors import BadRequest, Conflict, Unauthorized
from hsm_sim.base import KeyAlgorithm, KeyStore
from signing.models import TotpEnrolment

TOTP_KEY = ("signing/totp", "signing:totp")
_OTP = re.compile(r"[0-9]{6}")
STEP_SECONDS = 30
ISSUER = "cloudseal"


def ensure_totp_key(keystore: KeyStore) -> list[str]:
    """Create the TOTP derivation key in the HSM if missing."""
    if keystore.has_key(TOTP_KEY[0]):
        return []
    keystore.generate_secret_key(*TOTP_KEY, KeyAlgorithm.HMAC_SHA256)
    return [TOTP_KEY[0]]


def _secret(keystore: KeyStore, credential_id: str, salt: bytes) -> str:
    derived = keystore.hmac_sha256(*TOTP_KEY, b"totp\n" + credential_id.encode() + b"\n" + salt)[:20]
    return base64.b32encode(derived).decode()


def enrol(session: Session, keystore: KeyStore, *, credential_id: str, account_name: str) -> str:
    """Create (or replace) the credential's authenticator; return the otpauth:// URI, once.

    The caller has checked the PIN and the device proof.
    """
    salt = secrets.token_bytes(16)
    existing = session.get(TotpEnrolment, credential_id)
    if existing is None:
        session.add(TotpEnrolment(credential_id=credential_id, salt=salt, created_at=utcnow()))
    else:
        existing.salt, existing.last_step = salt, 0
        session.add(existing)
    session.flush()
    audit.record(session, actor=f"credential:{credential_id}", action="signing.totp_enrol",
                 object_type="credential", object_id=credential_id)
    return pyotp.TOTP(_secret(keystore, credential_id, salt)).provisioning_uri(name=account_name, issuer_name=ISSUER)


def verify(session: Session, keystore: KeyStore, *, credential_id: str, code: str, now: float | None = None) -> None:
    """Accept a fresh code once; 401 ``invalid_otp`` for a wrong, stale or replayed one."""
    accept_step(session, credential_id, *matching_step(session, keystore, credential_id=credential_id, code=code,
                                                       now=now))


def matching_step(reader: Session, keystore: KeyStore, *, credential_id: str, code: str,
                  now: float | None = None) -> tuple[int, bytes]:
    """The time step ``code`` belongs to (current one, or one either side) and the secret's
    salt it was checked under; only reads.

    400 ``invalid_otp`` for a malformed code, 409 ``otp_not_enrolled``, 401 ``invalid_otp``
    for a wrong one. The caller then spends the step with :func:`accept_step`.
    """
    if not _OTP.fullmatch(code):
        raise BadRequest("an OTP is 6 digits", code="invalid_otp")
    found = reader.execute(select(TotpEnrolment.salt, TotpEnrolment.last_step)
                           .where(TotpEnrolment.credential_id == credential_id)).first()
    if found is None:
        raise Conflict("no authenticator is enrolled for this credential", code="otp_not_enrolled")
    salt, last_step = found
    totp = pyotp.TOTP(_secret(keystore, credential_id, salt))
    current = int((now if now is not None else time.time()) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if secrets.compare_digest(totp.at(step * STEP_SECONDS), code):
            if step <= last_step:
                raise Unauthorized("this OTP was already used", code="invalid_otp")
            return step, salt
    raise Unauthorized("the OTP is wrong", code="invalid_otp")


def accept_step(session: Session, credential_id: str, step: int, salt: bytes) -> None:
    """Spend a matched step: it and every earlier one are refused from now on (replay). The
    salt must still be the one the code was checked under (no re-enrolment in between)."""
    moved = session.execute(
        update(TotpEnrolment).where(TotpEnrolment.credential_id == credential_id)
        .where(TotpEnrolment.salt == salt).where(TotpEnrolment.last_step < step).values(last_step=step)
    )
    if moved.rowcount != 1:
        raise Unauthorized("this OTP was already used", code="invalid_otp")
