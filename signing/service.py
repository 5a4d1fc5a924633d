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
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlmodel import Session

from ca.context import Pki
from ca.models import IssuedCertificate
from core import audit
from core.db import UTCDateTime, utcnow
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from hsm_sim.base import DigestAlgorithm, KeyAlgorithm, KeyNotFound, KeyStore, Mechanism
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


@dataclass(frozen=True)
class SigningCredential:
    """What signing needs to know of a credential, read in one statement outside the write
    transaction (everything that matters is checked again inside it)."""

    row_id: int
    credential_id: str
    investor_reference: str
    key_label: str
    key_algorithm: str
    status: str
    certificate_serial: str
    certificate_status: str | None
    certificate_not_after: dt.datetime | None
    device_public_key: bytes
    pin_salt: bytes
    pin_hmac: bytes
    locked_at: dt.datetime | None

    @property
    def key_owner(self) -> str:
        return f"investor:{self.investor_reference}"


# The statements of the signing path are built once: constructing a statement costs several
# times more than running it, and signing runs them on every request.
_LOAD_CREDENTIAL = (
    select(Credential.id, Credential.credential_id, Investor.reference, Credential.key_label,
           Credential.key_algorithm, Credential.status, Credential.certificate_serial, IssuedCertificate.status,
           IssuedCertificate.not_after, Credential.device_public_key, Credential.pin_salt, Credential.pin_hmac,
           Credential.locked_at)
    .join(Investor, Investor.id == Credential.investor_id)
    .outerjoin(IssuedCertificate, IssuedCertificate.serial_hex == Credential.certificate_serial)
    .where(Credential.credential_id == bindparam("credential_id"))
)
_RECHECK = (
    select(Credential.id, Credential.credential_id, Credential.status, Credential.locked_at,
           Credential.pin_salt, Credential.pin_hmac, Credential.pin_failures, Credential.certificate_serial,
           Credential.device_public_key,
           IssuedCertificate.status.label("certificate_status"),
           IssuedCertificate.not_after.label("certificate_not_after"))
    .outerjoin(IssuedCertificate, IssuedCertificate.serial_hex == Credential.certificate_serial)
    .where(Credential.id == bindparam("row_id"))
    .with_for_update(of=Credential)
)
_FIND_SAD = (
    select(SignatureAuthorization.credential_id, SignatureAuthorization.hashes,
           SignatureAuthorization.hash_algorithm, SignatureAuthorization.purpose,
           SignatureAuthorization.remaining, SignatureAuthorization.expires_at)
    .where(SignatureAuthorization.sad_hash == bindparam("sad_hash"))
)
_SPEND_SAD = (
    update(SignatureAuthorization).where(SignatureAuthorization.sad_hash == bindparam("spent_sad"))
    .where(SignatureAuthorization.remaining == bindparam("count"))
    .where(SignatureAuthorization.expires_at > bindparam("now", type_=UTCDateTime()))
    .values(remaining=0)
    .execution_options(synchronize_session=False)
)
_INSERT_SAD = insert(SignatureAuthorization)
_INSERT_SIGNATURES = insert(SignatureRecord)
_CERTIFICATE_DER = select(IssuedCertificate.der).where(IssuedCertificate.serial_hex == bindparam("serial"))


def load_signing_credential(reader: Session, credential_id: str) -> SigningCredential:
    """The credential with its holder and certificate status; 404 ``unknown_credential``."""
    ra_credentials.require_credential_id(credential_id)
    row = reader.connection().execute(_LOAD_CREDENTIAL, {"credential_id": credential_id}).first()
    if row is None:
        raise NotFound("no such credential", code="unknown_credential")
    return SigningCredential(*row)


def _loaded(reader: Session, credential_id: str, loaded: SigningCredential | None) -> SigningCredential:
    if loaded is not None and loaded.credential_id == credential_id:
        return loaded
    return load_signing_credential(reader, credential_id)


def _recheck(session: Session, credential: SigningCredential) -> Row[Any]:
    """Inside the write transaction: the credential's PIN state and status, locked against
    concurrent changes (row lock on PostgreSQL; SQLite's write lock is already held)."""
    row = session.connection().execute(_RECHECK, {"row_id": credential.row_id}).one()
    _active(row.status)
    if row.device_public_key != credential.device_public_key:
        raise Conflict("the credential's device changed: authorise again", code="credential_changed")
    if row.certificate_serial != credential.certificate_serial:
        raise Conflict("the credential's certificate changed: authorise again", code="credential_changed")
    return row


def _active(status: str) -> None:
    if status == "suspended":
        raise Forbidden("the credential is suspended", code="credential_suspended")
    if status != "active":
        raise Forbidden(f"the credential is {status}", code="credential_not_active")


def _certificate_usable(status: str | None, not_after: dt.datetime | None) -> None:
    if status != "good" or not_after is None or not_after <= utcnow():
        raise Forbidden("the credential's certificate is not valid", code="credential_not_active")


@dataclass(frozen=True)
class _SecondFactor:
    """A second factor checked before the write transaction and spent inside it."""

    challenge_id: str | None = None
    totp_step: int | None = None
    totp_salt: bytes | None = None


def _check_second_factor(reader: Session, keystore: KeyStore, credential: SigningCredential, *,
                         hash_algorithm: str, digests: list[bytes], challenge_id: str | None,
                         device_signature: str | None, otp: str | None) -> _SecondFactor:
    """Before the write transaction: the device's proof over a challenge and these hashes,
    or a TOTP code; :func:`_spend_second_factor` makes either single-use."""
    if challenge_id is not None and device_signature is not None:
        devices.check_challenge_proof(reader, challenge_id=challenge_id, credential_id=credential.credential_id,
                                      action=authorization_action(hash_algorithm, digests),
                                      device_key=credential.device_public_key, signature_b64=device_signature)
        return _SecondFactor(challenge_id=challenge_id)
    if otp is not None:
        step, salt = totp.matching_step(reader, keystore, credential_id=credential.credential_id, code=otp)
        return _SecondFactor(totp_step=step, totp_salt=salt)
    raise BadRequest("a device proof or an OTP is required", code="second_factor_required")


def _authorised_in_transaction(session: Session, pki: Pki, credential: SigningCredential, factor: _SecondFactor,
                               pin: str) -> Row[Any]:
    """The write-transaction half of sole control: spend the second factor, recheck the
    status, check the PIN (the RA's shared lockout counter; wrong PINs are committed by the
    caller, see :class:`core.errors.CommittedRefusal`)."""
    if factor.challenge_id is not None:
        devices.burn_challenge(session, factor.challenge_id)
    else:
        totp.accept_step(session, credential.credential_id, factor.totp_step or 0, factor.totp_salt or b"")
    current = _recheck(session, credential)
    ra_credentials.verify_pin(session, pki, current, pin)
    return current


def authorize(
    session: Session, pki: Pki, *, credential_id: str, pin: str, hash_algorithm: str, digests: list[bytes],
    client: str, purpose: str, challenge_id: str | None = None, device_signature: str | None = None,
    otp: str | None = None, reader: Session | None = None, loaded: SigningCredential | None = None,
) -> tuple[str, dt.datetime]:
    """Check PIN + a second factor; return a SAD and when it expires.

    The second factor is the enrolled device's signature over a fresh challenge and these
    hashes (the app), or a TOTP code from the authenticator enrolled for the credential
    (generic CSC clients). Wrong PINs count toward the RA's lockout (committed by the caller,
    see :class:`core.errors.CommittedRefusal`); a locked, suspended or revoked credential
    authorises nothing. Reads and the device-proof check go through ``reader`` (default
    ``session``) so that on SQLite the write lock covers only the final statements;
    ``loaded`` is the credential when the caller has just read it.
    """
    _check_digests(hash_algorithm, digests)
    credential = _loaded(reader or session, credential_id, loaded)
    factor = _check_second_factor(reader or session, pki.keystore, credential, hash_algorithm=hash_algorithm,
                                  digests=digests, challenge_id=challenge_id, device_signature=device_signature,
                                  otp=otp)
    _active(credential.status)
    _authorised_in_transaction(session, pki, credential, factor, pin)
    sad = secrets.token_urlsafe(32)
    now = utcnow()
    session.connection().execute(_INSERT_SAD, dict(
        sad_hash=hashlib.sha256(sad.encode()).hexdigest(), credential_id=credential.credential_id,
        hash_algorithm=hash_algorithm, hashes=json.dumps([d.hex() for d in digests]),
        num_signatures=len(digests), remaining=len(digests), client=client[:200], purpose=purpose[:32],
        created_at=now, expires_at=now + SAD_LIFETIME,
    ))
    audit.record(session, actor=f"credential:{credential.credential_id}", action="signing.authorize",
                 object_type="credential", object_id=credential.credential_id,
                 details={"hashes": len(digests), "client": client[:200], "purpose": purpose[:32]})
    return sad, now + SAD_LIFETIME


def _usable_mechanism(credential: SigningCredential, mechanism: Mechanism | None) -> Mechanism:
    if mechanism is None:
        return default_mechanism(credential.key_algorithm)
    if mechanism not in sign_mechanisms(credential.key_algorithm):
        raise BadRequest(f"a {credential.key_algorithm} key cannot sign with {mechanism.value}",
                         code="unsupported_algorithm")
    return mechanism


def _find_sad(reader: Session, *, sad: str, credential_id: str, hash_algorithm: str,
              digests: list[bytes]) -> tuple[str, str]:
    """The SAD's hash and purpose, if it authorises exactly these hashes on this credential."""
    sad_hash = hashlib.sha256(sad.encode()).hexdigest()
    found = reader.connection().execute(_FIND_SAD, {"sad_hash": sad_hash}).first()
    if found is None or found.credential_id != credential_id:
        raise BadRequest("the SAD is not valid for this credential", code="invalid_sad")
    if sorted(json.loads(found.hashes)) != sorted(d.hex() for d in digests) or found.hash_algorithm != hash_algorithm:
        raise BadRequest("the SAD does not authorise these hashes", code="invalid_sad")
    if found.remaining != len(digests) or found.expires_at <= utcnow():  # spared the HSM; _spend decides
        raise BadRequest("the SAD was already used or has expired", code="invalid_sad")
    return sad_hash, found.purpose


def _spend(session: Session, *, sad_hash: str, count: int) -> None:
    """Spend a SAD: one conditional UPDATE, so of racing requests exactly one succeeds."""
    spent = session.connection().execute(_SPEND_SAD, {"spent_sad": sad_hash, "count": count, "now": utcnow()})
    if spent.rowcount != 1:
        raise BadRequest("the SAD was already used or has expired", code="invalid_sad")


def _hsm_sign(keystore: KeyStore, credential: SigningCredential, hash_algorithm: str, digests: list[bytes],
              mechanism: Mechanism) -> list[SignedHash]:
    algorithm = DigestAlgorithm(hash_algorithm)
    sign_algorithm = signature_algorithm_oid(mechanism, hash_algorithm)
    try:
        return [SignedHash(digest, keystore.sign(credential.key_label, credential.key_owner, digest, algorithm,
                                                 mechanism), sign_algorithm) for digest in digests]
    except KeyNotFound as exc:  # renewed or revoked since it was read: its key is gone
        raise Conflict("the credential changed while signing: authorise again", code="credential_changed") from exc


def _log_signatures(session: Session, credential: SigningCredential, signed: list[SignedHash], *,
                    hash_algorithm: str, client: str, purpose: str) -> None:
    now = utcnow()
    session.connection().execute(_INSERT_SIGNATURES, [dict(
        credential_id=credential.credential_id, certificate_serial=credential.certificate_serial,
        digest_hex=s.digest.hex(), hash_algorithm=hash_algorithm, sign_algorithm=s.sign_algorithm,
        client=client[:200], purpose=purpose[:32], signed_at=now) for s in signed])
    audit.record(session, actor=f"credential:{credential.credential_id}", action="signing.sign",
                 object_type="credential", object_id=credential.credential_id,
                 details={"signatures": len(signed), "client": client[:200], "purpose": purpose[:32]})


def sign_hash(
    session: Session, keystore: KeyStore, *, sad: str, credential_id: str, hash_algorithm: str,
    digests: list[bytes], client: str, mechanism: Mechanism | None = None, reader: Session | None = None,
    loaded: SigningCredential | None = None,
) -> list[SignedHash]:
    """Sign exactly the authorised hashes, once; refuse anything else without spending the SAD.

    ``mechanism`` defaults to the key's usual one (ECDSA, or RSA PKCS#1 v1.5); RSA keys also
    sign RSA-PSS (MGF1 with the digest's hash, salt as long as the digest). The HSM signs
    before the write transaction; the signatures are returned (and logged) only if that
    transaction spends the SAD and finds the credential and its certificate still valid.
    """
    _check_digests(hash_algorithm, digests)
    credential = _loaded(reader or session, credential_id, loaded)
    mechanism = _usable_mechanism(credential, mechanism)
    sad_hash, purpose = _find_sad(reader or session, sad=sad, credential_id=credential.credential_id,
                                  hash_algorithm=hash_algorithm, digests=digests)
    _active(credential.status)
    _certificate_usable(credential.certificate_status, credential.certificate_not_after)
    signed = _hsm_sign(keystore, credential, hash_algorithm, digests, mechanism)
    _spend(session, sad_hash=sad_hash, count=len(digests))
    current = _recheck(session, credential)
    if current.locked_at is not None:
        raise Forbidden("the PIN is locked: ask the broker to unblock it", code="pin_locked")
    _certificate_usable(current.certificate_status, current.certificate_not_after)
    _log_signatures(session, credential, signed, hash_algorithm=hash_algorithm, client=client, purpose=purpose)
    return signed


def _certificate(reader: Session, serial: str) -> x509.Certificate:
    der = reader.connection().execute(_CERTIFICATE_DER, {"serial": serial}).scalar_one()
    return x509.load_der_x509_certificate(der)


def sign_cms(
    session: Session, pki: Pki, *, credential_id: str, pin: str, digest: bytes, hash_algorithm: str,
    client: str, purpose: str, challenge_id: str | None = None, device_signature: str | None = None,
    otp: str | None = None, reader: Session | None = None,
) -> bytes:
    """Authorise and sign in one call: a detached CAdES-BES CMS over a document ``digest``.

    The second factor binds to the document digest (what the investor approved); the HSM
    signs the digest of the signed attributes built around it, and that is what the log
    records (verification looks it up from the CMS). The second factor is spent and the PIN
    checked (every wrong one counted) in the write transaction before the HSM signs, so no
    answer, nor its timing, tells a right PIN from a wrong one without counting it.
    """
    _check_digests(hash_algorithm, [digest])
    credential = load_signing_credential(reader or session, credential_id)
    factor = _check_second_factor(reader or session, pki.keystore, credential, hash_algorithm=hash_algorithm,
                                  digests=[digest], challenge_id=challenge_id, device_signature=device_signature,
                                  otp=otp)
    _active(credential.status)
    leaf = _certificate(reader or session, credential.certificate_serial)
    current = _authorised_in_transaction(session, pki, credential, factor, pin)
    _certificate_usable(current.certificate_status, current.certificate_not_after)
    attributes = cms.build_signed_attributes(digest, hash_algorithm, leaf, utcnow())
    signed = _hsm_sign(pki.keystore, credential, hash_algorithm,
                       [cms.signed_attributes_digest(attributes, hash_algorithm)],
                       default_mechanism(credential.key_algorithm))
    _log_signatures(session, credential, signed, hash_algorithm=hash_algorithm, client=client, purpose=purpose)
    chain = [pki.ca_certificate(pki.load_ca(reader or session, name)) for name in ("issuing", "root")]
    return cms.assemble_detached_cms(attributes, signed[0].signature, leaf, chain, hash_algorithm,
                                     default_mechanism(credential.key_algorithm).value)


def signatures_of(session: Session, digest: bytes) -> list[SignatureRecord]:
    """What the log knows of signatures over ``digest`` (for verification and disputes)."""
    return list(session.execute(
        select(SignatureRecord).where(SignatureRecord.digest_hex == digest.hex()).order_by(SignatureRecord.id)
    ).scalars())

