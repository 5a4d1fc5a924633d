"""Certificate revocation lists (RFC 5280 §5): publication and the refresh schedule."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlmodel import Session

from ca.context import Pki, signature_hash
from ca.models import CertificateAuthority, CrlRecord, IssuedCertificate


def _revoked_entry(row: IssuedCertificate, now: dt.datetime) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(int(row.serial_hex, 16))
        .revocation_date(row.revoked_at or now)
    )
    reason = x509.ReasonFlags(row.revocation_reason or "unspecified")
    # RFC 5280 §5.3.1: the reason code "unspecified" SHOULD be left out.
    if reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    if row.invalidity_date is not None:
        builder = builder.add_extension(x509.InvalidityDate(row.invalidity_date), critical=False)
    return builder.build()


def _take_crl_number(session: Session, ca_name: str) -> int:
    # The UPDATE takes the row (or database) lock first, so CRL numbers only ever grow.
    session.execute(
        update(CertificateAuthority)
        .where(CertificateAuthority.name == ca_name)
        .values(next_crl_number=CertificateAuthority.next_crl_number + 1)
    )
    return session.execute(
        select(CertificateAuthority.next_crl_number).where(CertificateAuthority.name == ca_name)
    ).scalar_one() - 1


def publish_crl(session: Session, pki: Pki, ca_name: str) -> CrlRecord:
    """Sign and store a new CRL for ``ca_name`` listing its revoked and held certificates."""
    ca = pki.load_ca(session, ca_name)
    number = _take_crl_number(session, ca_name)
    ca_cert = pki.ca_certificate(ca)
    now = pki.clock().replace(microsecond=0)
    next_update = now + pki.crl_validity
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    revoked = session.execute(
        select(IssuedCertificate)
        .where(IssuedCertificate.ca_name == ca_name)
        .where(IssuedCertificate.status.in_(("revoked", "on_hold")))  # type: ignore[attr-defined]
        .where(IssuedCertificate.not_after > now)
        .order_by(IssuedCertificate.id)
    ).scalars()
    for row in revoked:
        builder = builder.add_revoked_certificate(_revoked_entry(row, now))
    signed = builder.sign(
        pki.signing_key(ca.key_label, ca.key_owner), signature_hash(ca_cert.public_key())  # type: ignore[arg-type]
    )
    record = CrlRecord(
        ca_name=ca_name, crl_number=number, this_update=now, next_update=next_update,
        der=signed.public_bytes(Encoding.DER),
    )
    session.add(record)
    session.flush()
    return record


def current_crl(session: Session, ca_name: str) -> CrlRecord | None:
    """The newest CRL of ``ca_name``."""
    return session.execute(
        select(CrlRecord).where(CrlRecord.ca_name == ca_name).order_by(CrlRecord.crl_number.desc()).limit(1)  # type: ignore[attr-defined]
    ).scalar_one_or_none()


def crl_due(record: CrlRecord | None, pki: Pki) -> bool:
    """A CRL is re-issued once half its validity has passed, well before nextUpdate."""
    if record is None:
        return True
    return pki.clock() >= record.this_update + (record.next_update - record.this_update) / 2
