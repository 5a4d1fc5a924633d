"""OCSP (RFC 6960) responses: signing them and storing the pre-generated ones.

Responses about certificates of the issuing CA are signed by the delegated OCSP signer;
responses about certificates the root issued (the issuing CA itself) are signed by the root.
A certificate's responses are signed when it is issued and again whenever its status
changes, in the same transaction; :mod:`ca.responder` answers requests from them.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from sqlalchemy import bindparam, delete, insert, select, update
from sqlmodel import Session

from ca.context import CaLike, Pki
from ca.models import CertificateRow, IssuedCertificate, OcspResponseRecord

# CertID hashes answered from pre-generated responses; others are signed on demand.
PREGENERATED_HASHES: dict[str, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}
SUPPORTED_HASHES: dict[str, hashes.HashAlgorithm] = {
    **PREGENERATED_HASHES,
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}

MALFORMED = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST
).public_bytes(Encoding.DER)
UNAUTHORIZED = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.UNAUTHORIZED
).public_bytes(Encoding.DER)
TRY_LATER = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.TRY_LATER
).public_bytes(Encoding.DER)


def _public_key_bits(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    # The content of the subjectPublicKey BIT STRING, which is what issuerKeyHash covers.
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return public_key.public_bytes(Encoding.DER, PublicFormat.PKCS1)


def issuer_hashes(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """issuerNameHash and issuerKeyHash of a CertID naming ``cert`` as the issuer (cached:
    CA certificates are few and immutable)."""
    return _issuer_hashes(cert, algorithm.name)


@functools.lru_cache(maxsize=64)
def _issuer_hashes(cert: x509.Certificate, algorithm_name: str) -> tuple[bytes, bytes]:
    algorithm = SUPPORTED_HASHES[algorithm_name]
    name_hash = hashes.Hash(algorithm)
    name_hash.update(cert.subject.public_bytes())
    key_hash = hashes.Hash(algorithm)
    key_hash.update(_public_key_bits(cert.public_key()))  # type: ignore[arg-type]
    return name_hash.finalize(), key_hash.finalize()


@dataclass(frozen=True)
class Responder:
    """A certificate and HSM key that may sign OCSP responses for one CA."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def current_ocsp_signer(session: Session, pki: Pki) -> IssuedCertificate | None:
    """The newest valid delegated OCSP signing certificate of the issuing CA."""
    now = pki.clock()
    return session.execute(
        select(IssuedCertificate)
        .where(IssuedCertificate.profile == "ocsp_signer")
        .where(IssuedCertificate.status == "good")
        .where(IssuedCertificate.not_before <= now)
        .where(IssuedCertificate.not_after > now)
        .order_by(IssuedCertificate.not_after.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).scalar_one_or_none()


def _still_good(session: Session, pki: Pki, certificate: x509.Certificate) -> bool:
    # A primary-key read at most every couple of seconds, so a signer revoked by another
    # worker (``cloudseal pki rotate-ocsp-signer``) stops signing within that time.
    # It goes to the read engine: on SQLite a first read in the session would take the write
    # lock, and issuance signs before it writes precisely to keep that lock short.
    statement = select(IssuedCertificate.status).where(
        IssuedCertificate.serial_hex == format(certificate.serial_number, "x"))
    if pki.read_engine is None:
        return session.execute(statement).scalar_one_or_none() == "good"
    with pki.read_engine.connect() as connection:
        return connection.execute(statement).scalar_one_or_none() == "good"


def responder_for(session: Session, pki: Pki, ca: CaLike) -> Responder | None:
    """Who signs responses about certificates of ``ca``; None when nobody can right now."""
    if ca.name == "issuing":
        cached = pki.cached_responder()
        if isinstance(cached, Responder):
            if pki.responder_checked_recently():
                return cached
            if _still_good(session, pki, cached.certificate):
                pki.mark_responder_checked()
                return cached
        signer = current_ocsp_signer(session, pki)
        if signer is None or signer.key_label is None:
            return None
        responder = Responder(
            certificate=x509.load_der_x509_certificate(signer.der),
            key=pki.signing_key(signer.key_label, "ocsp:issuing"),
        )
        pki.remember_responder(responder, signer.not_after)
        return responder
    return Responder(
        certificate=pki.ca_certificate(ca), key=pki.signing_key(ca.key_label, ca.key_owner)
    )


def build_response(
    pki: Pki,
    *,
    ca_cert: x509.Certificate,
    responder: Responder,
    serial_number: int,
    algorithm: hashes.HashAlgorithm,
    row: CertificateRow | None,
    nonce: bytes | None = None,
) -> tuple[bytes, dt.datetime, dt.datetime]:
    """Sign a single-response OCSP answer; ``row`` None means the CA never issued it."""
    now = pki.clock().replace(microsecond=0)
    next_update = now + pki.ocsp_validity
    name_hash, key_hash = issuer_hashes(ca_cert, algorithm)
    revocation_time = revocation_reason = None
    if row is None:
        status = ocsp.OCSPCertStatus.UNKNOWN
    elif row.status == "good":
        status = ocsp.OCSPCertStatus.GOOD
    else:
        status = ocsp.OCSPCertStatus.REVOKED
        revocation_time = row.revoked_at
        reason = x509.ReasonFlags(row.revocation_reason or "unspecified")
        revocation_reason = None if reason is x509.ReasonFlags.unspecified else reason
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial_number,
            algorithm=algorithm, cert_status=status, this_update=now, next_update=next_update,
            revocation_time=revocation_time, revocation_reason=revocation_reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
    )
    if responder.certificate != ca_cert:
        builder = builder.certificates([responder.certificate])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    signed = builder.sign(responder.key, hashes.SHA256())
    return signed.public_bytes(Encoding.DER), now, next_update


_responses = OcspResponseRecord.__table__  # type: ignore[attr-defined]
_UPDATE_RESPONSE = (
    update(_responses)
    .where(_responses.c.ca_name == bindparam("key_ca"))
    .where(_responses.c.serial_hex == bindparam("key_serial"))
    .where(_responses.c.hash_algorithm == bindparam("key_hash"))
    .values(der=bindparam("der"), this_update=bindparam("this_update"),
            next_update=bindparam("next_update"))
)
_INSERT_RESPONSE = insert(_responses)


def store_response(session: Session, values: dict[str, object]) -> None:
    """Insert or replace one stored response (Core statements: this is on the issuance path)."""
    connection = session.connection()
    updated = connection.execute(_UPDATE_RESPONSE, {
        "key_ca": values["ca_name"], "key_serial": values["serial_hex"],
        "key_hash": values["hash_algorithm"], "der": values["der"],
        "this_update": values["this_update"], "next_update": values["next_update"],
    })
    if not updated.rowcount:
        connection.execute(_INSERT_RESPONSE, values)


def sign_statuses(
    session: Session, pki: Pki, row: CertificateRow,
    algorithms: tuple[str, ...] = tuple(PREGENERATED_HASHES),
) -> list[dict[str, object]]:
    """Sign the responses about ``row`` for each pre-generated CertID hash (nothing stored)."""
    ca = pki.load_ca(session, row.ca_name)
    responder = responder_for(session, pki, ca)
    if responder is None:
        return []
    ca_cert = pki.ca_certificate(ca)
    signed = []
    for name in algorithms:
        der, this_update, next_update = build_response(
            pki, ca_cert=ca_cert, responder=responder, serial_number=int(row.serial_hex, 16),
            algorithm=SUPPORTED_HASHES[name], row=row,
        )
        signed.append({
            "ca_name": row.ca_name, "serial_hex": row.serial_hex, "hash_algorithm": name,
            "this_update": this_update, "next_update": next_update, "der": der,
        })
    return signed


def store_statuses(session: Session, signed: list[dict[str, object]], *, fresh: bool = False) -> None:
    """Store responses from :func:`sign_statuses`; ``fresh``: none exist yet for them."""
    if fresh and signed:
        session.connection().execute(_INSERT_RESPONSE, signed)
        return
    for values in signed:
        store_response(session, values)


def publish_status(session: Session, pki: Pki, row: CertificateRow) -> None:
    """(Re)generate and store the responses about ``row``, replacing older ones.

    When nobody can sign right now, the stored answers are deleted rather than left to
    speak of an old status: the responder then says tryLater until a signer exists.
    """
    signed = sign_statuses(session, pki, row)
    if not signed:
        session.connection().execute(
            delete(_responses).where(_responses.c.ca_name == row.ca_name)
            .where(_responses.c.serial_hex == row.serial_hex))
        return
    store_statuses(session, signed)
