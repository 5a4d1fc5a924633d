"""An investor's credential: activation, PIN checks, and the certificate lifecycle.

Every certificate change goes through ``ca.service`` in the same transaction, so CRL and
OCSP show it the moment it commits. Private keys are generated in and never leave the HSM;
a revoked or superseded credential's key is destroyed.
"""

from __future__ import annotations

import contextlib
import re
import datetime as dt
import hmac
import secrets
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from typing import Any

from sqlalchemy import Row, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ca import service as ca_service
from ca.context import Pki
from core import audit
from core.auth import Actor, Role
from core.db import utcnow
from core.errors import BadRequest, CommittedRefusal, Conflict, NotFound
from hsm_sim.base import KeyAlgorithm, KeyNotFound, KeyStore
from ra import secrets as ra_secrets
from ra.devices import (
    activation_message,
    check_pin_policy,
    device_key_der,
    load_device_key,
    verify_device_signature,
)
from ra.models import ActivationCode, Credential, Enrolment, Investor
from ra.service import wipe_codes

MAX_ACTIVATION_ATTEMPTS = 5
MAX_PIN_FAILURES = 5
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Activated:
    """What the app receives after redeeming its activation code."""

    credential_id: str
    investor_reference: str
    certificate_der: bytes


def investor_subject(investor: Investor) -> x509.Name:
    """Certificates name the investor and the public reference, never the identity number."""
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.COMMON_NAME, investor.name[:64]),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, investor.reference),
    ])


def key_owner(investor: Investor) -> str:
    """The HSM owner of an investor's signing keys."""
    return f"investor:{investor.reference}"


def _destroy_after(session: Session, keystore: KeyStore, label: str, *, on: str) -> None:
    """Destroy an HSM key once the transaction ends ``on`` "commit" or "rollback".

    The HSM is not part of the database transaction: a key made for a transaction that
    rolls back must go, and a key retired by one must stay usable until it commits.
    """
    pending: dict[str, list[str]] = session.info.setdefault("hsm_destroy", {"commit": [], "rollback": []})
    if not pending["commit"] and not pending["rollback"]:
        def finish(which: str) -> None:
            labels = session.info.pop("hsm_destroy", {"commit": [], "rollback": []})[which]
            for stale in labels:
                with contextlib.suppress(KeyNotFound):
                    keystore.destroy(stale)

        event.listen(session, "after_commit", lambda _s: finish("commit"), once=True)
        event.listen(session, "after_soft_rollback", lambda _s, _t: finish("rollback"), once=True)
    pending[on].append(label)


def _new_key_and_certificate(session: Session, pki: Pki, actor: Actor, investor: Investor,
                             algorithm: KeyAlgorithm) -> tuple[str, str, bytes]:
    label = f"investor/{investor.reference}/{uuid.uuid4().hex[:12]}"
    pki.keystore.generate_key_pair(label, key_owner(investor), algorithm)
    _destroy_after(session, pki.keystore, label, on="rollback")
    row = ca_service.issue_certificate(
        session, pki, actor=actor, ca_name="issuing", profile_name="investor_signing",
        subject=investor_subject(investor), public_key=pki.keystore.public_key(label), key_label=label,
    )
    return label, row.serial_hex, row.der


def redeem_activation(
    session: Session, pki: Pki, *, activation_id: str, code: str, device_public_key: str,
    device_signature: str, pin: str,
) -> Activated:
    """Redeem a code from the app: register the device key, set the PIN, get the certificate.

    A wrong code counts an attempt (committed even though the call fails); after five, even
    the right code is refused. Expired or used codes are refused. For a device replacement
    the credential keeps its key and certificate and gets the new device and PIN.
    """
    activation = session.execute(
        select(ActivationCode).where(ActivationCode.public_id == activation_id).with_for_update()
    ).scalar_one_or_none()
    if activation is None:
        raise NotFound("no such activation", code="unknown_activation")
    session.refresh(activation)
    if activation.used_at is not None:
        raise Conflict("this activation code was already used", code="activation_used")
    if activation.attempts >= MAX_ACTIVATION_ATTEMPTS:
        raise _activation_refused(session, activation, CommittedRefusal(
            "too many wrong codes: ask the broker for a new one", code="activation_locked", status_code=403))
    if activation.expires_at <= utcnow():
        raise BadRequest("the activation code has expired: ask the broker for a new one", code="activation_expired")
    if not hmac.compare_digest(activation.code_hash, ra_secrets.code_digest(code)):
        session.execute(update(ActivationCode).where(ActivationCode.id == activation.id)
                        .values(attempts=ActivationCode.attempts + 1))
        raise _activation_refused(session, activation, CommittedRefusal(
            "the activation code is wrong", code="invalid_activation_code", status_code=400))
    enrolment = session.get(Enrolment, activation.enrolment_id)
    investor = session.get(Investor, enrolment.investor_id) if enrolment and enrolment.investor_id else None
    if enrolment is None or investor is None:
        raise NotFound("no such activation", code="unknown_activation")
    device_key = load_device_key(device_public_key)
    device_der = device_key_der(device_key)
    verify_device_signature(device_der, activation_message(activation_id, ra_secrets.normalise_code(code), device_der),
                            device_signature)
    check_pin_policy(pin, investor.birth_date)
    burned = session.execute(update(ActivationCode).where(ActivationCode.id == activation.id)
                             .where(ActivationCode.used_at.is_(None))  # type: ignore[union-attr]
                             .values(used_at=utcnow()))
    if burned.rowcount != 1:
        raise Conflict("this activation code was already used", code="activation_used")
    app_actor = Actor(subject=investor.reference, role=Role.INVESTOR)
    actor_label = app_actor.label
    salt = secrets.token_bytes(16)
    pin_mac = ra_secrets.pin_hmac(pki.keystore, salt, pin)
    now = utcnow()
    if enrolment.purpose == "device_replacement":
        credential = _current(session, investor.id)
        credential.device_public_key, credential.device_registered_at = device_der, now
        credential.pin_salt, credential.pin_hmac, credential.pin_failures, credential.locked_at = salt, pin_mac, 0, None
        session.add(credential)
        certificate_der = ca_service.get_certificate(session, credential.certificate_serial or "").der
        action = "device.replace"
    else:
        if _current_or_none(session, investor.id) is not None:
            raise Conflict("the investor already holds a credential", code="credential_exists")
        algorithm = KeyAlgorithm(enrolment.key_algorithm)
        label, serial, certificate_der = _new_key_and_certificate(session, pki, app_actor, investor, algorithm)
        credential = Credential(
            credential_id=uuid.uuid4().hex, investor_id=investor.id, key_label=label, key_algorithm=algorithm.value,
            certificate_serial=serial, device_public_key=device_der, device_registered_at=now,
            pin_salt=salt, pin_hmac=pin_mac, created_at=now,
        )
        session.add(credential)
        action = "credential.activate"
    session.execute(update(Enrolment).where(Enrolment.id == enrolment.id).values(status="activated"))
    wipe_codes(session, enrolment.id or 0)
    try:
        session.flush()
    except IntegrityError as exc:  # another code of the same investor was redeemed at the same moment
        raise Conflict("the investor already holds a credential", code="credential_exists") from exc
    audit.record(session, actor=actor_label, tenant=enrolment.broker_code, action=action,
                 object_type="credential", object_id=credential.credential_id)
    return Activated(credential.credential_id, investor.reference, certificate_der)


def _activation_refused(session: Session, activation: ActivationCode, refusal: CommittedRefusal) -> CommittedRefusal:
    audit.record(session, actor="anonymous", action="activation.redeem", object_type="enrolment",
                 object_id=str(activation.enrolment_id), outcome="failure", details={"reason": refusal.code})
    return refusal


def _current_or_none(session: Session, investor_id: int) -> Credential | None:
    return session.execute(
        select(Credential).where(Credential.investor_id == investor_id).where(Credential.current == 1)
        .with_for_update()
    ).scalar_one_or_none()


def _current(session: Session, investor_id: int) -> Credential:
    credential = _current_or_none(session, investor_id)
    if credential is None:
        raise Conflict("the investor holds no credential", code="no_credential")
    return credential


def get_credential(session: Session, credential_id: str) -> Credential:
    """A credential by its public id, locked for update; 404 ``unknown_credential``."""
    if not _CREDENTIAL_ID.fullmatch(credential_id):  # every caller's input reaches here
        raise NotFound("no such credential", code="unknown_credential")
    credential = session.execute(
        select(Credential).where(Credential.credential_id == credential_id).with_for_update()
    ).scalar_one_or_none()
    if credential is None:
        raise NotFound("no such credential", code="unknown_credential")
    session.refresh(credential)
    return credential


def require_credential_id(credential_id: str) -> None:
    """404 ``unknown_credential`` for what cannot be a credential id (before any query)."""
    if not _CREDENTIAL_ID.fullmatch(credential_id):
        raise NotFound("no such credential", code="unknown_credential")


def require_credential(reader: Session, credential_id: str) -> None:
    """404 ``unknown_credential`` unless the credential exists (a plain read, no lock)."""
    found = _CREDENTIAL_ID.fullmatch(credential_id) and reader.execute(
        select(Credential.id).where(Credential.credential_id == credential_id)).first()
    if not found:
        raise NotFound("no such credential", code="unknown_credential")


def verify_pin(session: Session, pki: Pki, credential: Credential | Row[Any], pin: str) -> None:
    """Check the PIN against the shared failure counter (the signing service uses it too).

    ``credential`` is the ORM row or a Core row with its ``id``, ``credential_id``,
    ``locked_at``, ``pin_salt``, ``pin_hmac`` and ``pin_failures``, read in the caller's
    write transaction.

    A wrong PIN increments the counter atomically; the fifth consecutive one locks the
    credential. A locked credential refuses even the right PIN until an RA officer unblocks
    it. Failures raise :class:`CommittedRefusal` (the counter must be committed).
    """
    if credential.locked_at is not None:
        raise CommittedRefusal("the PIN is locked: ask the broker to unblock it", code="pin_locked", status_code=403)
    if ra_secrets.pin_matches(pki.keystore, credential.pin_salt, pin, credential.pin_hmac):
        if credential.pin_failures:
            session.execute(update(Credential).where(Credential.id == credential.id).values(pin_failures=0))
        return
    failures = session.execute(
        update(Credential).where(Credential.id == credential.id)
        .values(pin_failures=Credential.pin_failures + 1).returning(Credential.pin_failures)
    ).scalar_one()
    locked = failures >= MAX_PIN_FAILURES
    if locked:
        session.execute(update(Credential).where(Credential.id == credential.id).values(locked_at=utcnow()))
    audit.record(session, actor=f"credential:{credential.credential_id}", action="credential.pin_check",
                 object_type="credential", object_id=credential.credential_id, outcome="failure",
                 details={"failures": failures, "locked": locked})
    if locked:
        raise CommittedRefusal("wrong PIN; the PIN is now locked", code="pin_locked", status_code=403)
    raise CommittedRefusal(f"wrong PIN ({MAX_PIN_FAILURES - failures} tries left)", code="wrong_pin", status_code=401)


def change_pin(session: Session, pki: Pki, credential: Credential, *, old_pin: str, new_pin: str,
               birth_date: dt.date | None) -> None:
    """Replace the PIN after checking the old one (and the caller's device proof)."""
    verify_pin(session, pki, credential, old_pin)
    check_pin_policy(new_pin, birth_date)
    salt = secrets.token_bytes(16)
    credential.pin_salt, credential.pin_hmac = salt, ra_secrets.pin_hmac(pki.keystore, salt, new_pin)
    session.add(credential)
    session.flush()
    audit.record(session, actor=f"credential:{credential.credential_id}", action="credential.pin_change",
                 object_type="credential", object_id=credential.credential_id)


def unblock_pin(session: Session, *, actor: Actor, credential: Credential) -> None:
    """Reset the PIN failure counter (RA officer of a linked broker, or an operator)."""
    credential.pin_failures, credential.locked_at = 0, None
    session.add(credential)
    session.flush()
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="credential.unblock",
                 object_type="credential", object_id=credential.credential_id)


def revoke_credential(session: Session, pki: Pki, *, actor: Actor, credential: Credential, reason: str) -> None:
    """Revoke the certificate (CRL/OCSP at once) and destroy the HSM key."""
    if reason == "certificateHold":
        raise BadRequest("use suspension for certificateHold", code="invalid_reason")
    if credential.status in ("revoked", "superseded"):
        raise Conflict("the credential is already revoked", code="already_revoked")
    ca_service.revoke_certificate(session, pki, actor=actor, serial=credential.certificate_serial or "", reason=reason,
                                  managed_ok=True)
    credential.status, credential.current = "revoked", None
    session.add(credential)
    session.flush()
    _destroy_after(session, pki.keystore, credential.key_label, on="commit")
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="credential.revoke",
                 object_type="credential", object_id=credential.credential_id, details={"reason": reason})


def suspend_credential(session: Session, pki: Pki, *, actor: Actor, credential: Credential) -> None:
    """Put the certificate on hold; nothing can be signed until it is resumed."""
    if credential.status != "active":
        raise Conflict(f"the credential is {credential.status}", code="not_active")
    ca_service.revoke_certificate(session, pki, actor=actor, serial=credential.certificate_serial or "",
                                  reason="certificateHold", managed_ok=True)
    credential.status = "suspended"
    session.add(credential)
    session.flush()
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="credential.suspend",
                 object_type="credential", object_id=credential.credential_id)


def resume_credential(session: Session, pki: Pki, *, actor: Actor, credential: Credential) -> None:
    """Release the hold: the certificate is good again."""
    if credential.status != "suspended":
        raise Conflict("the credential is not suspended", code="not_suspended")
    ca_service.release_hold(session, pki, actor=actor, serial=credential.certificate_serial or "", managed_ok=True)
    credential.status = "active"
    session.add(credential)
    session.flush()
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="credential.resume",
                 object_type="credential", object_id=credential.credential_id)


def renew_credential(session: Session, pki: Pki, *, actor: Actor, credential: Credential) -> bytes:
    """New key, new certificate under the same credential id; the old certificate is revoked
    as superseded and its key destroyed once the new one is in place (same transaction)."""
    if credential.status != "active":
        raise Conflict(f"the credential is {credential.status}", code="not_active")
    investor = session.get(Investor, credential.investor_id)
    if investor is None:
        raise NotFound("no such investor", code="unknown_investor")
    old_label, old_serial = credential.key_label, credential.certificate_serial or ""
    label, serial, certificate_der = _new_key_and_certificate(session, pki, actor, investor,
                                                              KeyAlgorithm(credential.key_algorithm))
    credential.key_label, credential.certificate_serial = label, serial
    session.add(credential)
    session.flush()
    ca_service.revoke_certificate(session, pki, actor=actor, serial=old_serial, reason="superseded", managed_ok=True)
    _destroy_after(session, pki.keystore, old_label, on="commit")
    audit.record(session, actor=actor.label, tenant=actor.tenant, action="credential.renew",
                 object_type="credential", object_id=credential.credential_id,
                 details={"old_serial": old_serial, "new_serial": serial})
    return certificate_der
