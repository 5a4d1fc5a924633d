"""What a revocation source answers: a certificate's status, and the protocol of sources.

Pure (no network, no database), so an offline verifier can use it: the online sources
(OCSP, CRL, the CA's records) live in :mod:`signing.revocation`, an offline one answering
from an auditor bundle in :mod:`voting.audit_trust`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

GOOD, REVOKED, ON_HOLD, UNKNOWN = "good", "revoked", "on_hold", "unknown"
# Clocks differ: a response "produced" a little in the future is still accepted.
CLOCK_SKEW = dt.timedelta(minutes=5)


def utcnow() -> dt.datetime:
    """The current time, aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class CertificateStatus:
    """A certificate's current revocation status as one source reports it.

    ``revocation_reason`` uses the RFC 5280 names the CA stores (``keyCompromise``,
    ``certificateHold`` …); ``detail`` says why a status is ``unknown``.
    """

    status: str
    revocation_time: dt.datetime | None = None
    revocation_reason: str | None = None
    source: str = ""
    detail: str | None = None

    def at(self, when: dt.datetime) -> str:
        """The status at ``when``: a revocation (or hold) after ``when`` did not apply yet.

        Revocation times have whole seconds, so a revocation in the same second as ``when``
        counts as before it: a signature is never given the benefit of that doubt.
        """
        if self.status in (REVOKED, ON_HOLD):
            if self.revocation_time is None or self.revocation_time <= when:
                return self.status
            return GOOD
        return self.status


class RevocationSource(Protocol):
    """Anything that can tell a certificate's current status."""

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """The status of ``certificate``, issued by ``issuer``; never raises."""
        ...


def signature_valid(public_key: object, signature: bytes, data: bytes,
                    hash_algorithm: hashes.HashAlgorithm | None) -> bool:
    """Whether ``signature`` over ``data`` verifies (ECDSA or RSA PKCS#1 v1.5): how OCSP
    responses and seals are checked, online and offline."""
    if hash_algorithm is None:
        return False
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True
