"""Small factories for test data: keys, subjects, issued certificates."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import Session

from ca import service
from ca.models import CertificateRow
from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope

OPERATOR = Actor(subject="alice", role=Role.OPERATOR)


def investor_subject(name: str = "Chen Mei-Ling", reference: str = "INV-000001") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, reference),
    ])


def issue_investor_certificate(platform: Platform, *, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
                               reference: str = "INV-000001") -> CertificateRow:
    """Issue an investor signing certificate through the service layer and commit it."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    with session_scope(platform.engine) as session:
        return service.issue_certificate(
            session, platform.pki, actor=OPERATOR, ca_name="issuing",
            profile_name="investor_signing", subject=investor_subject(reference=reference),
            public_key=key.public_key(),
        )


def revoke(platform: Platform, serial: str, reason: str = "keyCompromise") -> CertificateRow:
    with session_scope(platform.engine) as session:
        return service.revoke_certificate(session, platform.pki, actor=OPERATOR, serial=serial, reason=reason)


def load(row: CertificateRow) -> x509.Certificate:
    return x509.load_der_x509_certificate(row.der)


def session_of(platform: Platform) -> Session:
    return Session(platform.engine, expire_on_commit=False)
