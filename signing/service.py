"""Sole-control signing: authorise with PIN + a second factor, then sign exactly what was
authorised, once, and log it.

``authorize`` checks the investor's PIN (the RA's shared lockout counter) and a device proof
over a fresh challenge *and the hashes*, then returns a SAD bound to the credential, the
exact hashes and their number, valid for at most five minutes. ``sign_hash`` consumes the
SAD with one conditional UPDATE, so twenty racing requests produce exactly one signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select, update
from sqlmodel import Session

from ca.context import Pki
from ca.models import IssuedCertificate
from core import audit
from core.db import utcnow
from core.errors import BadRequest, Forbidden
from hsm_sim.base import DigestAlgorithm, KeyAlgorithm, KeyStore, Mechanism
from ra import credentials as ra_credentials
from ra import devices
from ra.models import Credential, Investor
from signing import cms, totp
from signing.models import SignatureAuthorization, SignatureRecord

SAD_LIFETIME = dt.timedelta(minutes=5)
MAX_HASHES = 100
# OIDs of the CSC API (hashAlgo, signAlgo).
HASH_OIDS = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
             "2.16.840.1.101.3.4.2.3": "sha512"}
ECDSA_WITH = {"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3", "sha512": "1.2.840.10045.4.3.4"}
RSA_WITH = {"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12", "sha512": "1.2.840.113549.1.1.13"}
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSASSA_PSS = "1.2.840.113549.1.1.10"


@dataclass(frozen=True)
class SignedHash:
    """One signature made by the HSM, with what the log recorded."""

    digest: bytes
    signature: bytes
    sign_algorithm: str


def authorization_action(hash_algorithm: str, digests: list[bytes]) -> str:
    """The action string the device signs: it binds the proof to these exact hashes."""
    bound = hashlib.sha256(hash_algorithm.encode() + b"".join(digests)).hexdigest()
    return f"authorize:{bound}"


def _check_digests(hash_algorithm: str, digests: list[bytes]) -> DigestAlgorithm:
    try:
        algorithm = DigestAlgorithm(hash_algorithm)
    except ValueError as exc:
        raise BadRequest(f"unsupported hash algorithm {hash_algorithm!r}", code="unsupported_algorithm") from exc
    if not 1 <= len(digests) <= MAX_HASHES:
        raise BadRequest(f"between 1 and {MAX_HASHES} hashes", code="invalid_hashes")
    if any(len(d) != algorithm.size for d in digests):
        raise BadRequest(f"every {hash_algorithm} hash is {algorithm.size} bytes", code="invalid_hashes")
    if len(set(digests)) != len(digests):
        raise BadRequest("the hashes must differ", code="invalid_hashes")
    return algorithm


def signature_algorithm_oid(mechanism: Mechanism, hash_algorithm: str) -> str:
    """The OID the log records for a signature: ``ecdsa-with-SHA*``, ``sha*WithRSAEncryption``
    or ``id-RSASSA-PSS`` (its parameters follow from the hash, see :func:`sign_mechanism`)."""
    if mechanism is Mechanism.ECDSA:
        return ECDSA_WITH[hash_algorithm]
    if mechanism is Mechanism.RSA_PKCS1V15:
        return RSA_WITH[hash_algorithm]
    return RSASSA_PSS


def default_mechanism(key_algorithm: str) -> Mechanism:
    """ECDSA for EC credentials, PKCS#1 v1.5 for RSA ones (what CMS signatures use)."""
    return Mechanism.ECDSA if KeyAlgorithm(key_algorithm).is_ec else Mechanism.RSA_PKCS1V15


def sign_mechanisms(key_algorithm: str) -> tuple[Mechanism, ...]:
    """What a credential's key can sign with."""
    return (Mechanism.ECDSA,) if KeyAlgorithm(key_algorithm).is_ec else (Mechanism.RSA_PKCS1V15, Mechanism.RSA_PSS)


def _active(credential: Credential) -> None:
    if credential.status == "suspended":
        raise Forbidden("the credential is suspended", code="credential_suspended")
    if credential.status != "active":
        raise Forbidden(f"the credential is {credential.status}", code="credential_not_active")


def authorize(
    session: Session, pki: Pki, *, credential_id: str, pin: str, hash_algorithm: str, digests: list[bytes],
    client: str, purpose: str, challenge_id: str | None = None, device_signature: str | None = None,
    otp: str | None = None,
) -> tuple[str, dt.datetime]:
    """Check PIN + a second factor; return a SAD and when it expires.

    The second factor is the enrolled device's signature over a fresh challenge and these
    hashes (the app), or a TOTP code from the authenticator enrolled for the credential
    (generic CSC clients). Wrong PINs count toward the RA's lockout (committed by the caller,
    see :class:`core.errors.CommittedRefusal`); a locked, suspended or revoked credential
    authorises nothing.
    """
    _check_digests(hash_algorithm, digests)
    credential = ra_credentials.get_credential(session, credential_id)
    if challenge_id is not None and device_signature is not None:
        devices.consume_challenge(session, challenge_id=challenge_id, credential_id=credential.credential_id,
                                  action=authorization_action(hash_algorithm, digests),
                                  device_key=credential.device_public_key, signature_b64=device_signature)
    elif otp is not None:
        totp.verify(session, pki.keystore, credential_id=credential.credential_id, code=otp)
    else:
        raise BadRequest("a device proof or an OTP is required", code="second_factor_required")
    _active(credential)
    ra_credentials.verify_pin(session, pki, credential, pin)
    sad = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(SignatureAuthorization(
        sad_hash=hashlib.sha256(sad.encode()).hexdigest(), credential_id=credential.credential_id,
        hash_algorithm=hash_algorithm, hashes=json.dumps([d.hex() for d in digests]),
        num_signatures=len(digests), remaining=len(digests), client=client[:200], purpose=purpose[:32],
        created_at=now, expires_at=now + SAD_LIFETIME,
    ))
    session.flush()
    audit.record(session, actor=f"credential:{credential.credential_id}", action="signing.authorize",
                 object_type="credential", object_id=credential.credential_id,
                 details={"hashes": len(digests), "client": client[:200], "purpose": purpose[:32]})
    return sad, now + SAD_LIFETIME


def _spend(session: Session, *, sad: str, credential_id: str, hash_algorithm: str,
           digests: list[bytes]) -> SignatureAuthorization:
    """Spend a SAD on exactly the hashes it authorised; refuse anything else without spending."""
    sad_hash = hashlib.sha256(sad.encode()).hexdigest()
    authorization = session.execute(
        select(SignatureAuthorization).where(SignatureAuthorization.sad_hash == sad_hash)
    ).scalar_one_or_none()
    if authorization is None or authorization.credential_id != credential_id:
        raise BadRequest("the SAD is not valid for this credential", code="invalid_sad")
    if sorted(json.loads(authorization.hashes)) != sorted(d.hex() for d in digests) \
            or authorization.hash_algorithm != hash_algorithm:
        raise BadRequest("the SAD does not authorise these hashes", code="invalid_sad")
    spent = session.execute(
        update(SignatureAuthorization).where(SignatureAuthorization.id == authorization.id)
        .where(SignatureAuthorization.remaining == len(digests))
        .where(SignatureAuthorization.expires_at > utcnow())
        .values(remaining=0)
    )
    if spent.rowcount != 1:
        raise BadRequest("the SAD was already used or has expired", code="invalid_sad")
    return authorization


def _usable_mechanism(credential: Credential, mechanism: Mechanism | None) -> Mechanism:
    if mechanism is None:
        return default_mechanism(credential.key_algorithm)
    if mechanism not in sign_mechanisms(credential.key_algorithm):
        raise BadRequest(f"a {credential.key_algorithm} key cannot sign with {mechanism.value}",
                         code="unsupported_algorithm")
    return mechanism


def _sign_and_log(session: Session, keystore: KeyStore, *, credential_id: str, hash_algorithm: str,
                  digests: list[bytes], client: str, purpose: str,
                  mechanism: Mechanism | None = None) -> tuple[Credential, list[SignedHash]]:
    credential = ra_credentials.get_credential(session, credential_id)
    _active(credential)
    mechanism = _usable_mechanism(credential, mechanism)
    status = session.execute(select(IssuedCertificate.status).where(
        IssuedCertificate.serial_hex == credential.certificate_serial)).scalar_one_or_none()
    if status != "good":
        raise Forbidden("the credential's certificate is not valid", code="credential_not_active")
    investor = session.get(Investor, credential.investor_id)
    owner = ra_credentials.key_owner(investor) if investor else ""
    algorithm = DigestAlgorithm(hash_algorithm)
    sign_algorithm = signature_algorithm_oid(mechanism, hash_algorithm)
    now = utcnow()
    signed = []
    for digest in digests:
        signature = keystore.sign(credential.key_label, owner, digest, algorithm, mechanism)
        session.add(SignatureRecord(
            credential_id=credential.credential_id, certificate_serial=credential.certificate_serial or "",
            digest_hex=digest.hex(), hash_algorithm=hash_algorithm, sign_algorithm=sign_algorithm,
            client=client[:200], purpose=purpose[:32], signed_at=now,
        ))
        signed.append(SignedHash(digest, signature, sign_algorithm))
    session.flush()
    audit.record(session, actor=f"credential:{credential.credential_id}", action="signing.sign",
                 object_type="credential", object_id=credential.credential_id,
                 details={"signatures": len(signed), "client": client[:200], "purpose": purpose[:32]})
    return credential, signed


def sign_hash(
    session: Session, keystore: KeyStore, *, sad: str, credential_id: str, hash_algorithm: str,
    digests: list[bytes], client: str, mechanism: Mechanism | None = None,
) -> list[SignedHash]:
    """Sign exactly the authorised hashes, once; refuse anything else without spending the SAD.

    ``mechanism`` defaults to the key's usual one (ECDSA, or RSA PKCS#1 v1.5); RSA keys also
    sign RSA-PSS (MGF1 with the digest's hash, salt as long as the digest).
    """
    _check_digests(hash_algorithm, digests)
    _usable_mechanism(ra_credentials.get_credential(session, credential_id), mechanism)
    authorization = _spend(session, sad=sad, credential_id=credential_id, hash_algorithm=hash_algorithm,
                           digests=digests)
    return _sign_and_log(session, keystore, credential_id=credential_id, hash_algorithm=hash_algorithm,
                         digests=digests, client=client, purpose=authorization.purpose, mechanism=mechanism)[1]


def sign_cms(
    session: Session, pki: Pki, *, credential_id: str, pin: str, digest: bytes, hash_algorithm: str,
    client: str, purpose: str, challenge_id: str | None = None, device_signature: str | None = None,
    otp: str | None = None,
) -> bytes:
    """Authorise and sign in one call: a detached CAdES-BES CMS over a document ``digest``.

    The second factor binds to the document digest (what the investor approved); the HSM
    signs the digest of the signed attributes built around it, and that is what the log
    records (verification looks it up from the CMS).
    """
    sad, _ = authorize(session, pki, credential_id=credential_id, pin=pin, hash_algorithm=hash_algorithm,
                       digests=[digest], client=client, purpose=purpose, challenge_id=challenge_id,
                       device_signature=device_signature, otp=otp)
    _spend(session, sad=sad, credential_id=credential_id, hash_algorithm=hash_algorithm, digests=[digest])
    serial = session.execute(select(Credential.certificate_serial).where(
        Credential.credential_id == credential_id)).scalar_one()
    leaf_row = session.execute(select(IssuedCertificate).where(IssuedCertificate.serial_hex == serial)).scalar_one()
    leaf = x509.load_der_x509_certificate(leaf_row.der)
    attributes = cms.build_signed_attributes(digest, hash_algorithm, leaf, utcnow())
    attributes_digest = cms.signed_attributes_digest(attributes, hash_algorithm)
    credential, signed = _sign_and_log(session, pki.keystore, credential_id=credential_id,
                                       hash_algorithm=hash_algorithm, digests=[attributes_digest], client=client,
                                       purpose=purpose)
    chain = [pki.ca_certificate(pki.load_ca(session, name)) for name in ("issuing", "root")]
    return cms.assemble_detached_cms(attributes, signed[0].signature, leaf, chain, hash_algorithm,
                                     default_mechanism(credential.key_algorithm).value)


def signatures_of(session: Session, digest: bytes) -> list[SignatureRecord]:
    """What the log knows of signatures over ``digest`` (for verification and disputes)."""
    return list(session.execute(
        select(SignatureRecord).where(SignatureRecord.digest_hex == digest.hex()).order_by(SignatureRecord.id)
    ).scalars())

