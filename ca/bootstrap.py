"""PKI bootstrap (``cloudseal init``) and upkeep (CRL re-issue, OCSP signer renewal).

Both are idempotent: running them again changes nothing that is still current.
"""

from __future__ import annotations

import datetime as dt
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import delete, select
from sqlmodel import Session

from ca import crl, ocsp
from ca.context import Pki, signature_hash
from ca.models import CertificateAuthority, CertificateRecord, IssuedCertificate, OcspResponseRecord
from ca.profiles import ISSUING_CA, OCSP_SIGNER, PLATFORM_SEAL, ROOT_CA, build_certificate
from ca.service import revoke_certificate, serial_hex, sign_certificate
from core import audit
from core.auth import SYSTEM_ACTOR, Actor
from hsm_sim.base import KeyAlgorithm, KeyStore

ROOT_KEY = ("ca/root", "ca:root")
ISSUING_KEY = ("ca/issuing", "ca:issuing")
OCSP_SIGNER_OWNER = "ocsp:issuing"
SEAL_OWNER = "platform:seal"
# Renew the delegated OCSP signer when less than this share of its life remains.
OCSP_SIGNER_RENEW_FRACTION = 1 / 3


def ensure_key(keystore: KeyStore, label: str, owner: str, algorithm: KeyAlgorithm) -> None:
    """Generate the key unless the HSM already holds it (a re-run after a crash reuses it)."""
    if not keystore.has_key(label):
        keystore.generate_key_pair(label, owner, algorithm)


def _name(pki: Pki, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, pki.country),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, pki.organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _create_root(session: Session, pki: Pki) -> CertificateAuthority:
    label, owner = ROOT_KEY
    ensure_key(pki.keystore, label, owner, KeyAlgorithm.EC_P384)
    public_key = pki.keystore.public_key(label)
    now = pki.clock().replace(microsecond=0)
    subject = _name(pki, f"{pki.organization} Root CA")
    cert = build_certificate(
        ROOT_CA, subject=subject, public_key=public_key, serial_number=pki.serial_source(),
        not_before=now - dt.timedelta(minutes=1), issuer=None,
    ).sign(pki.signing_key(label, owner), signature_hash(public_key))
    ca = CertificateAuthority(
        name="root", key_label=label, key_owner=owner, certificate_der=cert.public_bytes(Encoding.DER),
        subject=cert.subject.rfc4514_string(), created_at=now,
    )
    session.add(ca)
    session.add(IssuedCertificate(
        serial_hex=serial_hex(cert.serial_number), ca_name="root", profile=ROOT_CA.name,
        subject=ca.subject, key_label=label, fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        der=ca.certificate_der, issued_at=now,
    ))
    session.flush()
    return ca


def _create_issuing(session: Session, pki: Pki, root: CertificateAuthority) -> CertificateAuthority:
    label, owner = ISSUING_KEY
    ensure_key(pki.keystore, label, owner, KeyAlgorithm.EC_P384)
    row = sign_certificate(
        session, pki, ca=root, profile=ISSUING_CA, subject=_name(pki, f"{pki.organization} Issuing CA"),
        public_key=pki.keystore.public_key(label), key_label=label,  # type: ignore[arg-type]
    )
    ca = CertificateAuthority(
        name="issuing", parent_name="root", key_label=label, key_owner=owner,
        certificate_der=row.der, subject=row.subject, created_at=row.issued_at,
    )
    session.add(ca)
    session.flush()
    return ca


def _issue_service_certificate(
    session: Session, pki: Pki, *, profile_name: str, common_name: str, owner: str,
    algorithm: KeyAlgorithm,
) -> CertificateRecord:
    profile = {OCSP_SIGNER.name: OCSP_SIGNER, PLATFORM_SEAL.name: PLATFORM_SEAL}[profile_name]
    label = f"{owner.replace(':', '/')}/{uuid.uuid4().hex[:12]}"
    pki.keystore.generate_key_pair(label, owner, algorithm)
    if profile is OCSP_SIGNER:
        pki.forget_responder()
    return sign_certificate(
        session, pki, ca=pki.load_ca(session, "issuing"), profile=profile,
        subject=_name(pki, common_name), public_key=pki.keystore.public_key(label),  # type: ignore[arg-type]
        key_label=label,
    )


def _signer_needs_renewal(session: Session, pki: Pki) -> bool:
    signer = ocsp.current_ocsp_signer(session, pki)
    if signer is None:
        return True
    lifetime = signer.not_after - signer.not_before
    return signer.not_after - pki.clock() < lifetime * OCSP_SIGNER_RENEW_FRACTION


def current_seal(session: Session, pki: Pki) -> IssuedCertificate | None:
    """The platform seal certificate (receipts, signed reports)."""
    return session.execute(
        select(IssuedCertificate)
        .where(IssuedCertificate.profile == PLATFORM_SEAL.name)
        .where(IssuedCertificate.key_label.is_not(None))  # type: ignore[union-attr]
        .where(IssuedCertificate.status == "good")
        .where(IssuedCertificate.not_after > pki.clock())
        .order_by(IssuedCertificate.not_after.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).scalar_one_or_none()


def _publish_missing_statuses(session: Session, pki: Pki) -> None:
    have = set(session.execute(select(OcspResponseRecord.serial_hex)).scalars())
    rows = session.execute(
        select(IssuedCertificate).where(IssuedCertificate.profile != ROOT_CA.name).with_for_update()
    ).scalars().all()
    for row in rows:
        if row.serial_hex not in have:
            ocsp.publish_status(session, pki, row)


def bootstrap(session: Session, pki: Pki) -> list[str]:
    """Create whatever of the PKI is missing; return what was created (empty on a re-run)."""
    created: list[str] = []
    root = session.get(CertificateAuthority, "root")
    if root is None:
        root = _create_root(session, pki)
        created.append("root CA")
    if session.get(CertificateAuthority, "issuing") is None:
        _create_issuing(session, pki, root)
        created.append("issuing CA")
    for ca_name in ("root", "issuing"):
        if crl.current_crl(session, ca_name) is None:
            crl.publish_crl(session, pki, ca_name)
            created.append(f"{ca_name} CRL")
    if _signer_needs_renewal(session, pki):
        _issue_service_certificate(
            session, pki, profile_name=OCSP_SIGNER.name, common_name=f"{pki.organization} OCSP Responder",
            owner=OCSP_SIGNER_OWNER, algorithm=KeyAlgorithm.EC_P256,
        )
        created.append("OCSP signer")
    if current_seal(session, pki) is None:
        _issue_service_certificate(
            session, pki, profile_name=PLATFORM_SEAL.name, common_name=f"{pki.organization} Platform Seal",
            owner=SEAL_OWNER, algorithm=KeyAlgorithm.EC_P256,
        )
        created.append("platform seal")
    _publish_missing_statuses(session, pki)
    for item in created:
        audit.record(
            session, actor=SYSTEM_ACTOR.label, action="pki.bootstrap", object_type="pki",
            object_id=item,
        )
    return created


def rotate_ocsp_signer(session: Session, pki: Pki, *, actor: Actor, reason: str = "superseded") -> str:
    """Issue a new delegated OCSP signer, revoke the current one, drop the answers it signed.

    For a suspected key compromise use ``reason="keyCompromise"``. Stored answers are
    deleted in the same transaction and re-signed by the new signer on first request.
    """
    old = ocsp.current_ocsp_signer(session, pki)
    new = _issue_service_certificate(
        session, pki, profile_name=OCSP_SIGNER.name, common_name=f"{pki.organization} OCSP Responder",
        owner=OCSP_SIGNER_OWNER, algorithm=KeyAlgorithm.EC_P256,
    )
    pki.forget_responder()
    if old is not None:
        revoke_certificate(session, pki, actor=actor, serial=old.serial_hex, reason=reason, managed_ok=True)
    session.execute(delete(OcspResponseRecord).where(OcspResponseRecord.ca_name == "issuing"))
    audit.record(session, actor=actor.label, action="pki.rotate_ocsp_signer", object_type="certificate",
                 object_id=new.serial_hex, details={"old": old.serial_hex if old else None, "reason": reason})
    return new.serial_hex


def refresh(session: Session, pki: Pki) -> list[str]:
    """Re-issue CRLs past half their validity and renew an ageing OCSP signer.

    The CA rows are locked first, so several workers refreshing at once do the work once.
    """
    session.execute(select(CertificateAuthority).order_by(CertificateAuthority.name).with_for_update()).all()
    done: list[str] = []
    for ca_name in ("root", "issuing"):
        if session.get(CertificateAuthority, ca_name) is None:
            continue
        if crl.crl_due(crl.current_crl(session, ca_name), pki):
            crl.publish_crl(session, pki, ca_name)
            done.append(f"{ca_name} CRL")
    if session.get(CertificateAuthority, "issuing") is not None and _signer_needs_renewal(session, pki):
        _issue_service_certificate(
            session, pki, profile_name=OCSP_SIGNER.name, common_name=f"{pki.organization} OCSP Responder",
            owner=OCSP_SIGNER_OWNER, algorithm=KeyAlgorithm.EC_P256,
        )
        done.append("OCSP signer")
    for item in done:
        audit.record(
            session, actor=SYSTEM_ACTOR.label, action="pki.refresh", object_type="pki", object_id=item,
        )
    return done

