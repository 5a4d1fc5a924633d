"""The investor's own view: certificate, brokers, devices; PIN change, revocation, renewal.

The changes are the RA's (``ra.credentials``), authorised the RA's way: a device proof over
a fresh challenge for the action (``pin_change``, ``revoke``, ``renew``) and, except for the
PIN change which checks the old PIN itself, the PIN. A wrong PIN counts toward the lockout
(:class:`core.errors.CommittedRefusal`, committed by the caller).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from ca.context import Pki
from ca.models import IssuedCertificate
from ca.profiles import PLATFORM_SEAL
from core.errors import Conflict, NotFound
from mobile_api import auth, inbox
from mobile_api.auth import MobileCaller
from ra import credentials as ra_credentials
from ra import devices
from ra.credentials import MAX_PIN_FAILURES
from ra.models import Broker, BrokerAccount, Credential, Investor


@dataclass(frozen=True)
class Device:
    """A device key enrolled for one of the investor's credentials."""

    device_id: str
    credential_id: str
    credential_status: str
    registered_at: dt.datetime
    current: bool


@dataclass(frozen=True)
class Profile:
    """What the "me" screen shows."""

    investor: Investor
    credential: Credential
    certificate: IssuedCertificate | None
    accounts: list[tuple[BrokerAccount, str]]
    devices: list[Device]

    @property
    def pin_tries_left(self) -> int:
        """Wrong PINs still allowed before the credential locks (0 when locked)."""
        return 0 if self.credential.locked_at is not None else max(MAX_PIN_FAILURES - self.credential.pin_failures, 0)


def _credential(reader: Session, caller: MobileCaller) -> Credential:
    credential = reader.execute(select(Credential).where(Credential.credential_id == caller.credential_id)
                                ).scalar_one_or_none()
    if credential is None:
        raise NotFound("no such credential", code="unknown_credential")
    return credential


def devices_of(reader: Session, caller: MobileCaller) -> list[Device]:
    """The device keys of every credential the investor has held, the one in use first."""
    rows = reader.execute(select(Credential).where(Credential.investor_id == caller.investor_id)
                          .order_by(Credential.id.desc())).scalars()  # type: ignore[union-attr]
    found = [Device(auth.device_sha256(c.device_public_key), c.credential_id, c.status, c.device_registered_at,
                    c.credential_id == caller.credential_id) for c in rows]
    return sorted(found, key=lambda d: not d.current)


def device(reader: Session, caller: MobileCaller, device_id: str) -> Device:
    """One of the investor's devices; 404 ``unknown_device`` for anyone else's."""
    for candidate in devices_of(reader, caller):
        if candidate.device_id == device_id:
            return candidate
    raise NotFound("no such device", code="unknown_device")


def profile(reader: Session, caller: MobileCaller) -> Profile:
    """The investor, the credential in use with its certificate, linked brokers and devices."""
    investor = reader.get(Investor, caller.investor_id)
    if investor is None:
        raise NotFound("no such investor", code="unknown_investor")
    credential = _credential(reader, caller)
    certificate = None
    if credential.certificate_serial:
        certificate = reader.execute(select(IssuedCertificate).where(
            IssuedCertificate.serial_hex == credential.certificate_serial)).scalar_one_or_none()
    accounts = [(account, name) for account, name in reader.execute(
        select(BrokerAccount, Broker.name).join(Broker, Broker.code == BrokerAccount.broker_code)
        .where(BrokerAccount.investor_id == caller.investor_id)
        .order_by(BrokerAccount.broker_code, BrokerAccount.account_number))]
    return Profile(investor, credential, certificate, accounts, devices_of(reader, caller))


def _proven(session: Session, caller: MobileCaller, *, challenge_id: str, device_signature: str,
            action: str) -> Credential:
    """The caller's credential, locked, once the device proved possession for ``action``."""
    credential = ra_credentials.get_credential(session, caller.credential_id)
    devices.consume_challenge(session, challenge_id=challenge_id, credential_id=credential.credential_id,
                              action=action, device_key=credential.device_public_key, signature_b64=device_signature)
    if credential.status not in ("active", "suspended"):
        raise Conflict(f"the credential is {credential.status}", code="credential_not_active")
    return credential


def change_pin(session: Session, pki: Pki, caller: MobileCaller, *, challenge_id: str, device_signature: str,
               old_pin: str, new_pin: str) -> None:
    """Replace the PIN (device proof for ``pin_change`` + the old PIN; the RA's PIN policy)."""
    credential = _proven(session, caller, challenge_id=challenge_id, device_signature=device_signature,
                         action="pin_change")
    investor = session.get(Investor, credential.investor_id)
    ra_credentials.change_pin(session, pki, credential, old_pin=old_pin, new_pin=new_pin,
                              birth_date=investor.birth_date if investor else None)


def revoke(session: Session, pki: Pki, caller: MobileCaller, *, challenge_id: str, device_signature: str, pin: str,
           reason: str, push: inbox.PushProvider = inbox.NO_PUSH) -> Credential:
    """Revoke the caller's own credential (device proof for ``revoke`` + PIN): CRL and OCSP
    show it at once, the HSM key is destroyed, every app session of it ends, and the
    change enters the inbox (and goes to the push provider)."""
    credential = _proven(session, caller, challenge_id=challenge_id, device_signature=device_signature,
                         action="revoke")
    ra_credentials.verify_pin(session, pki, credential, pin)
    ra_credentials.revoke_credential(session, pki, actor=caller.actor, credential=credential, reason=reason)
    auth.close_credential_sessions(session, credential.credential_id)
    inbox.add(session, investor_id=caller.investor_id, investor_reference=caller.reference,
              events=inbox.certificate_events(session, caller.investor_id), push=push)
    return credential


def renew(session: Session, pki: Pki, caller: MobileCaller, *, challenge_id: str, device_signature: str, pin: str,
          push: inbox.PushProvider = inbox.NO_PUSH) -> tuple[Credential, bytes]:
    """A new HSM key and certificate for the caller's credential (device proof for ``renew`` +
    PIN); the old certificate is revoked as superseded. Returns the credential and the DER."""
    credential = _proven(session, caller, challenge_id=challenge_id, device_signature=device_signature,
                         action="renew")
    ra_credentials.verify_pin(session, pki, credential, pin)
    der = ra_credentials.renew_credential(session, pki, actor=caller.actor, credential=credential)
    inbox.add(session, investor_id=caller.investor_id, investor_reference=caller.reference,
              events=inbox.certificate_events(session, caller.investor_id), push=push)
    return credential, der


def trust(reader: Session, pki: Pki) -> tuple[bytes, bytes, list[IssuedCertificate]]:
    """The root and issuing CA certificates (DER) and every platform seal certificate issued
    (old ones too: they sealed older receipts), oldest first."""
    root = pki.load_ca(reader, "root").certificate_der
    issuing = pki.load_ca(reader, "issuing").certificate_der
    seals = list(reader.execute(select(IssuedCertificate).where(IssuedCertificate.profile == PLATFORM_SEAL.name)
                                .order_by(IssuedCertificate.issued_at)).scalars())
    return root, issuing, seals
