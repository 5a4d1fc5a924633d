"""Verifying order and ballot signatures (detached CAdES-BES CMS) the way brokers need it.

A :class:`Verifier` holds the trust anchors (the platform's root, from ``/pki/chain.pem``)
and a revocation source (:class:`signing.status.RevocationSource`: the online ones are in
:mod:`signing.revocation`, an offline one in :mod:`voting.audit_trust`). It imports nothing
of the database or the network. :meth:`Verifier.verify` checks, in this order, and stops at
the first failure with its stable reason code:

1. the CMS parses (``malformed``, ``unsupported_algorithm``);
2. it signs the given document (``digest_mismatch``) with the signer certificate's key
   (``bad_signature``);
3. the signer certificate chains to an anchor and may sign documents (``untrusted_chain``);
4. every certificate of the chain was valid at the signing time (``not_yet_valid``,
   ``expired``);
5. none was revoked or on hold at the signing time (``revoked``, ``on_hold``). A revocation
   *after* the signing time leaves the signature valid; the result shows it;
6. the status of every certificate of the chain could be learnt (``revocation_unknown``:
   no fresh, authentic OCSP answer or CRL, or the CA does not know the certificate). Like
   an "indeterminate" verdict, it is not valid, and asking again later may settle it.

The signing time is, in order of preference: the ``at`` the caller gives as authoritative;
the platform's signature log when the verifier has one (:class:`SignatureLog`; a signature
the log does not know is judged *now*, never at the time its signer claims); the signer's
own ``signingTime`` claim, flagged ``signer_claim``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from signing.cms import chain_to, issued_by, verify_cms_signature
from signing.cms_parse import (
    DIGEST_HASHES,
    CmsError,
    ParsedCms,
    _decode_input,
    parse_detached_cms,
)
from signing.status import (
    GOOD,
    ON_HOLD,
    REVOKED,
    UNKNOWN,
    CertificateStatus,
    RevocationSource,
    utcnow,
)

log = logging.getLogger("cloudseal.verifier")

PLATFORM_LOG, SIGNER_CLAIM, NO_SIGNING_TIME = "platform_log", "signer_claim", "none"
# Worst first: the chain's status is that of its worst certificate.
_SEVERITY = {REVOKED: 3, ON_HOLD: 2, UNKNOWN: 1, GOOD: 0}


class SignatureLog(Protocol):
    """An authoritative record of when a certificate's key signed a given digest."""

    def signed_at(self, parsed: ParsedCms) -> dt.datetime | None:
        """When the key of ``parsed``'s signer signed its signed attributes; None if never."""
        ...


@dataclass(frozen=True)
class Signer:
    """Who signed: the investor reference (subject serialNumber), subject and serial."""

    reference: str | None
    subject: str
    serial: str


@dataclass(frozen=True)
class VerificationResult:
    """The verdict on one signature, with what it rests on; JSON-ready via :meth:`to_json`.

    ``reason`` is None when ``valid``. ``signing_time_source`` is ``platform_log``,
    ``signer_claim`` or ``none`` (judged at ``checked_at``); ``logged`` is whether the
    platform's log knows the signature (None when no log was consulted). Statuses are
    ``good``, ``revoked``, ``on_hold`` or ``unknown`` (not determined).
    """

    valid: bool
    reason: str | None
    message: str | None
    signer: Signer | None
    signing_time: dt.datetime | None
    signing_time_source: str
    claimed_signing_time: dt.datetime | None
    logged: bool | None
    status_at_signing: str
    status_now: str
    revocation_time: dt.datetime | None
    revocation_reason: str | None
    chain: tuple[str, ...]
    digest_algorithm: str | None
    document_digest: str | None
    cms_sha256: str
    checked_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """A dict of JSON types: times as ISO 8601 strings, the chain as a list."""
        def plain(value: object) -> object:
            if isinstance(value, dt.datetime):
                return value.isoformat()
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value
        return {key: plain(value) for key, value in dataclasses.asdict(self).items()}


class _Failure(Exception):
    """A check of the input that failed, with its reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@functools.lru_cache(maxsize=1024)
def _subject_text(certificate: x509.Certificate) -> str:
    # Remembered: the same few CA certificates (and each signer's own) come back in every
    # verification, and formatting a name costs more than the rest of describing it.
    return certificate.subject.rfc4514_string()


def signer_of(certificate: x509.Certificate) -> Signer:
    """The signer's identity as the platform's certificates carry it."""
    references = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    reference = references[0].value if references else None
    return Signer(reference=reference if isinstance(reference, str) else None,
                  subject=_subject_text(certificate),
                  serial=format(certificate.serial_number, "x"))


def cms_fingerprint(cms: object) -> str:
    """SHA-256 of the CMS's DER (of the input as given when it is not even decodable)."""
    try:
        der = _decode_input(cms)  # type: ignore[arg-type]
    except CmsError:
        if isinstance(cms, str):
            der = cms.encode("utf-8", "replace")
        elif isinstance(cms, (bytes, bytearray, memoryview)):
            der = bytes(cms)
        else:
            der = repr(cms).encode()
    return hashlib.sha256(der).hexdigest()


def _aware(when: dt.datetime) -> dt.datetime:
    return (when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when).astimezone(dt.timezone.utc)


def _is_self_signed(certificate: x509.Certificate) -> bool:
    return issued_by(certificate, certificate)


class Verifier:
    """Verifies detached CMS signatures against ``trust_anchors`` and a revocation source.

    ``intermediates`` are CA certificates to build paths with when a CMS does not carry
    them. ``signature_log``, when given, is the only source of signing times besides ``at``.
    """

    def __init__(self, trust_anchors: list[x509.Certificate], revocation: RevocationSource, *,
                 intermediates: Sequence[x509.Certificate] = (), signature_log: SignatureLog | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        if not trust_anchors:
            raise ValueError("a verifier needs at least one trust anchor")
        self.trust_anchors = list(trust_anchors)
        self.intermediates = tuple(c for c in intermediates if c not in self.trust_anchors)
        self.revocation = revocation
        self.signature_log = signature_log
        self._clock = clock

    @classmethod
    def from_chain_pem(cls, pem_bytes: bytes | str, revocation: RevocationSource, **options: Any) -> Verifier:
        """A verifier trusting the self-signed certificates of a PEM bundle (``/pki/chain.pem``);
        the others serve as intermediates. A bundle with no self-signed certificate is
        trusted as a whole."""
        data = pem_bytes.encode("ascii") if isinstance(pem_bytes, str) else pem_bytes
        certificates = x509.load_pem_x509_certificates(data)
        anchors = [c for c in certificates if _is_self_signed(c)] or certificates
        return cls(anchors, revocation, intermediates=[c for c in certificates if c not in anchors], **options)

    def verify(self, cms: bytes | str, *, content: bytes | None = None, digest: bytes | None = None,
               digest_algorithm: str = "sha256", at: dt.datetime | None = None) -> VerificationResult:
        """Verify ``cms`` over ``content`` (hashed with the CMS's digest algorithm) or over its
        ``digest`` computed with ``digest_algorithm``.

        Never raises for bad input; only a failing revocation source or signature log (e.g.
        its database is down) raises, as it is no verdict on the signature.
        """
        base = _Outcome(checked_at=self._clock(), cms_sha256=cms_fingerprint(cms), digest_algorithm=digest_algorithm,
                        document_digest=_digest_hex(content, digest, digest_algorithm))
        try:
            parsed = parse_detached_cms(cms)
            base.describe(parsed)
            base.document_digest, base.digest_algorithm = _document_digest(parsed, content, digest, digest_algorithm)
        except (CmsError, _Failure) as failure:
            return base.failed(failure.code, failure.message)
        except Exception:  # a defect of some input no parser anticipated: reported, never raised
            log.exception("an input to signature verification could not be processed")
            return base.failed("malformed", "the CMS could not be processed")
        self._signing_time(base, parsed, at)
        try:
            path = self._valid_path(base, parsed)
        except (CmsError, _Failure) as failure:
            return base.failed(failure.code, failure.message)
        except Exception:
            log.exception("an input to signature verification could not be processed")
            return base.failed("malformed", "the CMS could not be processed")
        return self._revocation_verdict(base, path)

    def _signing_time(self, base: _Outcome, parsed: ParsedCms, at: dt.datetime | None) -> None:
        if at is not None:
            base.signing_time, base.signing_time_source = _aware(at), PLATFORM_LOG
        elif self.signature_log is not None:
            logged_at = self.signature_log.signed_at(parsed)
            base.logged = logged_at is not None
            base.signing_time = logged_at
            base.signing_time_source = PLATFORM_LOG if logged_at is not None else NO_SIGNING_TIME
        elif parsed.signing_time is not None:
            base.signing_time, base.signing_time_source = parsed.signing_time, SIGNER_CLAIM

    def _valid_path(self, base: _Outcome, parsed: ParsedCms) -> list[x509.Certificate]:
        """Signer → anchor, once the signature, the chain and the validity periods check out."""
        verify_cms_signature(parsed, bytes.fromhex(base.document_digest or ""))
        with_intermediates = dataclasses.replace(parsed, certificates=parsed.certificates + self.intermediates)
        path = chain_to(with_intermediates, self.trust_anchors)
        base.chain = tuple(_subject_text(c) for c in path)
        _check_signer_usage(path[0])
        judged_at = base.judged_at
        for certificate in path:
            if judged_at < certificate.not_valid_before_utc:
                raise _Failure("not_yet_valid", f"{certificate.subject.rfc4514_string()} was not yet valid")
            if judged_at > certificate.not_valid_after_utc:
                raise _Failure("expired", f"{certificate.subject.rfc4514_string()} had expired")
        return path

    def _revocation_verdict(self, base: _Outcome, path: list[x509.Certificate]) -> VerificationResult:
        """Valid unless a certificate of ``path`` was revoked or on hold when it was used."""
        statuses = [self.revocation.status(child, issuer) for child, issuer in itertools.pairwise(path)]
        base.record_statuses(statuses)
        for certificate, status in zip(path, statuses):
            then = status.at(base.judged_at)
            if then in (REVOKED, ON_HOLD):
                what = "revoked" if then == REVOKED else "on hold"
                return base.failed(then, f"{certificate.subject.rfc4514_string()} was {what} when it was used")
        for certificate, status in zip(path, statuses):
            if status.at(base.judged_at) not in (GOOD, REVOKED, ON_HOLD):
                detail = f": {status.detail}" if status.detail else ""
                return base.failed("revocation_unknown", f"the revocation status of "
                                   f"{certificate.subject.rfc4514_string()} could not be learnt{detail}")
        return base.result(valid=True)


def _check_signer_usage(certificate: x509.Certificate) -> None:
    """A signer is an end entity whose key usage, if stated, allows signing documents."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise _Failure("untrusted_chain", "a CA certificate does not sign documents")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise _Failure("untrusted_chain", "the signer certificate's key usage does not allow signing")


def _digest_hex(content: bytes | None, digest: bytes | None, digest_algorithm: str) -> str | None:
    """The document digest as far as it can be known before the CMS is parsed."""
    try:
        if isinstance(content, (bytes, bytearray, memoryview)) and digest is None:
            return hashlib.new(str(digest_algorithm).lower(), bytes(content)).hexdigest()
        if isinstance(digest, (bytes, bytearray, memoryview)) and content is None:
            return bytes(digest).hex()
    except (ValueError, TypeError):
        return None
    return None


def _document_digest(parsed: ParsedCms, content: bytes | None, digest: bytes | None,
                     digest_algorithm: str) -> tuple[str, str]:
    """The digest to compare with the CMS's messageDigest, and its algorithm."""
    if (content is None) == (digest is None):
        raise _Failure("malformed", "give exactly one of the content and its digest")
    if content is not None:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise _Failure("malformed", "the content must be bytes")
        hasher = hashes.Hash(DIGEST_HASHES[parsed.digest_algorithm]())
        hasher.update(bytes(content))
        return hasher.finalize().hex(), parsed.digest_algorithm
    if not isinstance(digest, (bytes, bytearray, memoryview)):
        raise _Failure("malformed", "the digest must be bytes")
    name = str(digest_algorithm).lower()
    if name not in DIGEST_HASHES:
        raise _Failure("unsupported_algorithm", f"digest algorithm {digest_algorithm!r} is not supported")
    if name != parsed.digest_algorithm:
        raise _Failure("digest_mismatch", f"the CMS signs a {parsed.digest_algorithm} digest, not a {name} one")
    if len(digest) != DIGEST_HASHES[name].digest_size:
        raise _Failure("digest_mismatch", f"a {name} digest is {DIGEST_HASHES[name].digest_size} bytes")
    return bytes(digest).hex(), name


@dataclass
class _Outcome:
    """What is known so far about one verification; becomes the result."""

    checked_at: dt.datetime
    cms_sha256: str
    digest_algorithm: str | None
    document_digest: str | None
    signer: Signer | None = None
    claimed_signing_time: dt.datetime | None = None
    signing_time: dt.datetime | None = None
    signing_time_source: str = NO_SIGNING_TIME
    logged: bool | None = None
    chain: tuple[str, ...] = ()
    status_at_signing: str = UNKNOWN
    status_now: str = UNKNOWN
    revocation_time: dt.datetime | None = None
    revocation_reason: str | None = None

    def describe(self, parsed: ParsedCms) -> None:
        self.signer = signer_of(parsed.signer_certificate)
        self.claimed_signing_time = parsed.signing_time

    @property
    def judged_at(self) -> dt.datetime:
        """The time validity is judged at: the signing time, or now when it is not known."""
        return self.signing_time or self.checked_at

    def record_statuses(self, statuses: list[CertificateStatus]) -> None:
        """The chain's status now and at signing: that of its worst certificate."""
        if not statuses:  # the signer is itself an anchor: nothing above it can revoke it
            self.status_now = GOOD
            self.status_at_signing = GOOD if self.signing_time is not None else UNKNOWN
            return
        worst_now = max(statuses, key=lambda s: _SEVERITY.get(s.status, 1))
        self.status_now = worst_now.status
        if worst_now.status in (REVOKED, ON_HOLD):
            self.revocation_time, self.revocation_reason = worst_now.revocation_time, worst_now.revocation_reason
        if self.signing_time is not None:
            then = [s.at(self.signing_time) for s in statuses]
            self.status_at_signing = max(then, key=lambda s: _SEVERITY.get(s, 1))

    def failed(self, code: str, message: str) -> VerificationResult:
        return self.result(valid=False, reason=code, message=message)

    def result(self, *, valid: bool, reason: str | None = None, message: str | None = None) -> VerificationResult:
        return VerificationResult(
            valid=valid, reason=reason, message=message, signer=self.signer, signing_time=self.signing_time,
            signing_time_source=self.signing_time_source, claimed_signing_time=self.claimed_signing_time,
            logged=self.logged, status_at_signing=self.status_at_signing, status_now=self.status_now,
            revocation_time=self.revocation_time, revocation_reason=self.revocation_reason, chain=self.chain,
            digest_algorithm=self.digest_algorithm, document_digest=self.document_digest,
            cms_sha256=self.cms_sha256, checked_at=self.checked_at,
        )


def decode_digest(text: str, digest_algorithm: str) -> bytes:
    """A digest given as hex or base64 (standard or URL-safe); ValueError if it is neither
    or has the wrong length for ``digest_algorithm``."""
    name = str(digest_algorithm).lower()
    if name not in DIGEST_HASHES:
        raise ValueError(f"digest algorithm {digest_algorithm!r} is not supported")
    size = DIGEST_HASHES[name].digest_size
    text = text.strip()
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    compact = text.replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except ValueError:
        raise ValueError("the digest is neither hex nor base64") from None
    if len(decoded) != size:
        raise ValueError(f"a {name} digest is {size} bytes")
    return decoded
