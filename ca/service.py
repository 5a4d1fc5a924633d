"""Certificate issuance and revocation: the CA's business rules, with no HTTP in sight."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from ca import crl, ocsp
from ca.context import CaLike, Pki, signature_hash
from ca.models import CertificateRecord, IssuedCertificate
from ca.profiles import PROFILES, REQUESTABLE_PROFILES, CertificateProfile, IssuerContext, build_certificate
from core import audit
from core.auth import Actor
from core.errors import BadRequest, Conflict, NotFound

STATUS_GOOD = "good"
STATUS_REVOKED = "revoked"
STATUS_ON_HOLD = "on_hold"

_SERIAL_ATTEMPTS = 5
# The hierarchy and the OCSP signer change only through the PKI commands, which replace
# them in the same step (revoking the issuing CA or the signer alone would leave nothing
# able to answer, or stored answers signed by a revoked responder).
MANAGED_PROFILES = frozenset({"root_ca", "issuing_ca", "ocsp_signer"})
_certificates = IssuedCertificate.__table__  # type: ignore[attr-defined]
# INSERT … ON CONFLICT DO NOTHING RETURNING id: a serial collision returns no row instead of
# aborting the transaction, on PostgreSQL and SQLite alike.
_INSERT_CERTIFICATE = {
    "sqlite": sqlite_insert(_certificates).on_conflict_do_nothing().returning(_certificates.c.id),
    "postgresql": pg_insert(_certificates).on_conflict_do_nothing().returning(_certificates.c.id),
}


def _insert_certificate(session: Session, values: dict[str, object]) -> int | None:
    connection = session.connection()
    return connection.execute(_INSERT_CERTIFICATE[connection.dialect.name], values).scalar_one_or_none()
_HEX_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)

# Reasons a caller may name (RFC 5280 §5.3.1); removeFromCRL is not a revocation.
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
}


def normalise_serial(serial: str) -> str:
    """Lower-case hex without separators or leading zeros; 400 ``invalid_serial`` otherwise."""
    cleaned = serial.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    cleaned = cleaned.lstrip("0") or "0"
    if not _HEX_SERIAL.match(cleaned) or cleaned == "0":
        raise BadRequest("a serial number is 1 to 20 bytes of hex", code="invalid_serial")
    return cleaned


def serial_hex(serial_number: int) -> str:
    """The canonical text form of a serial number."""
    return format(serial_number, "x")


def check_public_key(public_key: object) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Accept ECDSA P-256/P-384 and RSA of 2048 bits or more; 400 ``unsupported_key`` else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, _ACCEPTED_CURVES):
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return public_key
    raise BadRequest(
        "the key must be ECDSA P-256/P-384 or RSA of at least 2048 bits", code="unsupported_key"
    )


def issuer_context(pki: Pki, ca: CaLike) -> IssuerContext:
    """The issuing side of a builder for certificates signed by ``ca``."""
    cert = pki.ca_certificate(ca)
    return IssuerContext(
        name=cert.subject,
        public_key=cert.public_key(),  # type: ignore[arg-type]
        crl_url=pki.crl_url(ca.name),
        ca_issuers_url=pki.ca_issuers_url(ca.name),
        ocsp_url=pki.ocsp_url,
    )


def sign_certificate(
    session: Session,
    pki: Pki,
    *,
    ca: CaLike,
    profile: CertificateProfile,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    key_label: str | None,
    publish_status: bool = False,
) -> CertificateRecord:
    """Build, sign and store one certificate under a fresh unique serial number.

    The serial's uniqueness is the database's unique constraint: on the (astronomically
    rare) collision the insert does nothing and a new serial is drawn. With
    ``publish_status`` its OCSP responses are signed too. All signing happens before the
    first write, so the write lock (SQLite) is held only for the inserts.
    """
    issuer = issuer_context(pki, ca)
    ca_cert = pki.ca_certificate(ca)
    ca_key = pki.signing_key(ca.key_label, ca.key_owner)
    now = pki.clock().replace(microsecond=0)
    for _ in range(_SERIAL_ATTEMPTS):
        serial = pki.serial_source()
        try:
            builder = build_certificate(
                profile, subject=subject, public_key=public_key, serial_number=serial,
                not_before=now - dt.timedelta(minutes=1), issuer=issuer,
                not_after_cap=ca_cert.not_valid_after_utc, policy_arc=pki.policy_arc,
            )
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_subject") from exc
        try:
            cert = builder.sign(ca_key, signature_hash(issuer.public_key))
        except ValueError as exc:  # e.g. a character outside an attribute's string type
            raise BadRequest(f"the subject cannot be encoded: {exc}", code="invalid_subject") from exc
        values = dict(
            serial_hex=serial_hex(serial), ca_name=ca.name, profile=profile.name,
            subject=cert.subject.rfc4514_string(), key_label=key_label,
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            der=cert.public_bytes(Encoding.DER), status=STATUS_GOOD, issued_at=now,
        )
        record = CertificateRecord(id=0, **values)
        statuses = ocsp.sign_statuses(session, pki, record) if publish_status else []
        new_id = _insert_certificate(session, values)
        if new_id is None:
            continue
        ocsp.store_statuses(session, statuses, fresh=True)
        return dataclasses.replace(record, id=new_id)
    raise Conflict("could not allocate a unique serial number", code="serial_exhausted")


def issue_certificate(
    session: Session,
    pki: Pki,
    *,
    actor: Actor,
    ca_name: str,
    profile_name: str,
    subject: x509.Name,
    public_key: object,
    key_label: str | None = None,
) -> CertificateRecord:
    """Issue an end-entity certificate and publish its OCSP status at once."""
    ca = pki.load_ca(session, ca_name)
    profile = PROFILES.get(profile_name)
    if profile is None:
        raise BadRequest(f"no certificate profile named {profile_name!r}", code="unknown_profile")
    if profile.name not in REQUESTABLE_PROFILES or ca.name != "issuing":
        raise BadRequest(
            f"CA {ca.name!r} does not issue {profile.name} certificates", code="profile_not_allowed"
        )
    row = sign_certificate(
        session, pki, ca=ca, profile=profile, subject=subject,
        public_key=check_public_key(public_key), key_label=key_label, publish_status=True,
    )
    audit.record(
        session, actor=actor.label, tenant=actor.tenant, action="certificate.issue",
        object_type="certificate", object_id=row.serial_hex,
        details={"ca": ca.name, "profile": profile.name, "subject": row.subject},
    )
    return row


def get_certificate(session: Session, serial: str) -> IssuedCertificate:
    """The certificate with this serial, or 404 ``unknown_certificate``."""
    key = normalise_serial(serial)
    row = session.execute(
        select(IssuedCertificate).where(IssuedCertificate.serial_hex == key)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no certificate with serial {key}", code="unknown_certificate")
    return row


def _lock_certificate(session: Session, serial: str) -> IssuedCertificate:
    key = normalise_serial(serial)
    row = session.execute(
        select(IssuedCertificate).where(IssuedCertificate.serial_hex == key).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no certificate with serial {key}", code="unknown_certificate")
    session.refresh(row)
    return row


def _refuse_managed(row: IssuedCertificate, managed_ok: bool) -> None:
    """The hierarchy and OCSP signer change through the PKI commands; an investor's
    HSM-held credential through the RA, which keeps its credential state in step."""
    if managed_ok:
        return
    if row.profile in MANAGED_PROFILES:
        raise Conflict(f"{row.profile} certificates are managed by the platform (cloudseal pki …)",
                       code="not_revocable")
    if row.profile == "investor_signing" and row.key_label is not None:
        raise Conflict("this investor credential is managed by the RA (/ra/investors/…)", code="managed_by_ra")


def revoke_certificate(
    session: Session,
    pki: Pki,
    *,
    actor: Actor,
    serial: str,
    reason: str,
    invalidity_date: dt.datetime | None = None,
    managed_ok: bool = False,
) -> IssuedCertificate:
    """Revoke (or, with ``certificateHold``, suspend) a certificate.

    The CRL of its CA and its OCSP responses are regenerated in the same transaction, so the
    new status is served the moment it commits. A held certificate may be revoked for good.
    Certificates of the hierarchy and the OCSP signer are refused (409 ``not_revocable``)
    unless ``managed_ok`` (the PKI commands, which replace them in the same transaction).
    """
    flag = REVOCATION_REASONS.get(reason)
    if flag is None:
        raise BadRequest(
            f"unknown revocation reason {reason!r}; use one of {sorted(REVOCATION_REASONS)}",
            code="invalid_reason",
        )
    if invalidity_date is not None and invalidity_date.tzinfo is None:
        raise BadRequest("invalidity_date needs a time zone", code="invalid_date")
    row = _lock_certificate(session, serial)
    _refuse_managed(row, managed_ok)
    if row.status == STATUS_REVOKED:
        raise Conflict(f"certificate {row.serial_hex} is already revoked", code="already_revoked")
    if row.status == STATUS_ON_HOLD and flag is x509.ReasonFlags.certificate_hold:
        raise Conflict(f"certificate {row.serial_hex} is already on hold", code="already_on_hold")
    now = pki.clock().replace(microsecond=0)
    previous = row.status
    row.status = STATUS_ON_HOLD if flag is x509.ReasonFlags.certificate_hold else STATUS_REVOKED
    if previous == STATUS_GOOD:
        row.revoked_at = now
    row.revocation_reason = flag.value
    row.invalidity_date = invalidity_date
    session.add(row)
    session.flush()
    crl.publish_crl(session, pki, row.ca_name)
    ocsp.publish_status(session, pki, row)
    audit.record(
        session, actor=actor.label, tenant=actor.tenant,
        action="certificate.hold" if row.status == STATUS_ON_HOLD else "certificate.revoke",
        object_type="certificate", object_id=row.serial_hex,
        details={"reason": flag.value, "previous_status": previous},
    )
    return row


def release_hold(session: Session, pki: Pki, *, actor: Actor, serial: str,
                 managed_ok: bool = False) -> IssuedCertificate:
    """Take a certificate off hold: it is good again and leaves the next CRL."""
    row = _lock_certificate(session, serial)
    _refuse_managed(row, managed_ok)
    if row.status != STATUS_ON_HOLD:
        raise Conflict(f"certificate {row.serial_hex} is not on hold", code="not_on_hold")
    row.status = STATUS_GOOD
    row.revoked_at = None
    row.revocation_reason = None
    row.invalidity_date = None
    session.add(row)
    session.flush()
    crl.publish_crl(session, pki, row.ca_name)
    ocsp.publish_status(session, pki, row)
    audit.record(
        session, actor=actor.label, tenant=actor.tenant, action="certificate.release",
        object_type="certificate", object_id=row.serial_hex,
    )
    return row
