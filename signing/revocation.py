"""Where a verifier learns whether a certificate was revoked: OCSP, CRLs or the CA's database.

Every source answers :meth:`RevocationSource.status` for a certificate and the certificate
that issued it, with the *current* status and, when revoked or on hold, since when. None
raises: an answer that cannot be obtained or trusted is ``unknown`` with a ``detail``.

* :class:`OcspRevocation` asks the OCSP responder (RFC 6960) by POST with a SHA-1 CertID and
  no nonce, checks the response's signature (by the issuing CA itself or by a delegated
  responder the issuing CA certified for OCSP signing) and keeps good answers until their
  nextUpdate.
* :class:`CrlRevocation` fetches CRLs (RFC 5280), checks that the issuing CA signed them and
  keeps them until their nextUpdate.
* :class:`DatabaseRevocation` reads the CA's own records; the platform's API uses it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import bindparam, select
from sqlmodel import Session

from ca.models import IssuedCertificate
from ca.ocsp import issuer_hashes
# The statuses and the source protocol are pure (an offline verifier uses them): re-exported here.
from signing.status import CLOCK_SKEW as CLOCK_SKEW
from signing.status import GOOD as GOOD
from signing.status import ON_HOLD as ON_HOLD
from signing.status import REVOKED as REVOKED
from signing.status import UNKNOWN as UNKNOWN
from signing.status import CertificateStatus as CertificateStatus
from signing.status import RevocationSource as RevocationSource
from signing.status import signature_valid
from signing.status import utcnow as utcnow

OCSP_PATH = "/pki/ocsp"
MAX_OCSP_RESPONSE_BYTES = 64 * 1024
MAX_CRL_BYTES = 16 * 1024 * 1024
MAX_CACHED_ANSWERS = 100_000


def _unknown(source: str, detail: str) -> CertificateStatus:
    return CertificateStatus(UNKNOWN, source=source, detail=detail)


def _revoked(source: str, when: dt.datetime | None, reason: x509.ReasonFlags | None) -> CertificateStatus:
    status = ON_HOLD if reason is x509.ReasonFlags.certificate_hold else REVOKED
    return CertificateStatus(status, when, (reason or x509.ReasonFlags.unspecified).value, source)


class _FetchError(Exception):
    """An HTTP exchange that gave no usable body."""


def _fetch(client: httpx.Client, method: str, url: str, *, max_bytes: int, content: bytes | None = None,
           headers: dict[str, str] | None = None) -> bytes:
    """The body of a 200 answer, read up to ``max_bytes``; :class:`_FetchError` otherwise."""
    try:
        with client.stream(method, url, content=content, headers=headers) as response:
            if response.status_code != 200:
                raise _FetchError(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise _FetchError(f"{url} answered more than {max_bytes} bytes")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise _FetchError(f"{url}: {type(exc).__name__}") from None


def _uris(names: Sequence[x509.GeneralName] | None) -> list[str]:
    return [n.value for n in names or () if isinstance(n, x509.UniformResourceIdentifier)]


class OcspRevocation:
    """Statuses from the OCSP responder, cached by CertID until the answer's nextUpdate.

    ``base_url`` is the platform's address (``https://pki.example``): requests go to its
    ``/pki/ocsp``. Without it, each certificate's AIA OCSP URL is used.
    """

    source = "ocsp"

    def __init__(self, client: httpx.Client, base_url: str | None = None, *,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._client = client
        self._url = None if base_url is None else (
            base_url.rstrip("/") if base_url.rstrip("/").endswith(OCSP_PATH) else base_url.rstrip("/") + OCSP_PATH)
        self._clock = clock
        self._cache: dict[tuple[bytes, bytes, int], tuple[CertificateStatus, dt.datetime]] = {}
        self._lock = threading.Lock()

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """The responder's answer, from the cache while it is fresh."""
        name_hash, key_hash = issuer_hashes(issuer, hashes.SHA1())
        cert_id = (name_hash, key_hash, certificate.serial_number)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(cert_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        url = self._url or self._aia_url(certificate)
        if url is None:
            return _unknown(self.source, "the certificate names no OCSP responder")
        request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1()).build()
        try:
            der = _fetch(self._client, "POST", url, max_bytes=MAX_OCSP_RESPONSE_BYTES,
                         content=request.public_bytes(Encoding.DER),
                         headers={"content-type": "application/ocsp-request"})
            status, next_update = self._read(der, cert_id, issuer, now)
        except _FetchError as exc:
            return _unknown(self.source, str(exc))
        if next_update is not None and status.status != UNKNOWN:
            with self._lock:
                if len(self._cache) >= MAX_CACHED_ANSWERS:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[cert_id] = (status, next_update)
        return status

    @staticmethod
    def _aia_url(certificate: x509.Certificate) -> str | None:
        try:
            access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        except (x509.ExtensionNotFound, ValueError):
            return None
        urls = [u for d in access if d.access_method == x509.AuthorityInformationAccessOID.OCSP
                for u in _uris([d.access_location])]
        return urls[0] if urls else None

    def _read(self, der: bytes, cert_id: tuple[bytes, bytes, int], issuer: x509.Certificate,
              now: dt.datetime) -> tuple[CertificateStatus, dt.datetime | None]:
        """The status in a response, once its signature and freshness check out."""
        try:
            response = ocsp.load_der_ocsp_response(der)
            if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                return _unknown(self.source, f"the responder said {response.response_status.name}"), None
            single = next((s for s in response.responses
                           if isinstance(s.hash_algorithm, hashes.SHA1)
                           and (s.issuer_name_hash, s.issuer_key_hash, s.serial_number) == cert_id), None)
            if single is None:
                return _unknown(self.source, "the response is about another certificate"), None
            problem = self._signature_problem(response, issuer, now)
            if problem is not None:
                return _unknown(self.source, problem), None
            this_update, next_update = single.this_update_utc, single.next_update_utc
            if this_update > now + CLOCK_SKEW or (next_update is not None and next_update <= now):
                return _unknown(self.source, "the response is not current"), None
            if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
                return CertificateStatus(GOOD, source=self.source), next_update
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                return _revoked(self.source, single.revocation_time_utc, single.revocation_reason), next_update
            return _unknown(self.source, "the responder does not know the certificate"), next_update
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            return _unknown(self.source, f"the response cannot be read: {type(exc).__name__}"), None

    @staticmethod
    def _signature_problem(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime) -> str | None:
        """None when the issuing CA, or a responder it certified for OCSP signing, signed."""
        candidates = [issuer, *response.certificates]
        if response.responder_key_hash is not None:
            responder = next((c for c in candidates
                              if issuer_hashes(c, hashes.SHA1())[1] == response.responder_key_hash), None)
        else:
            responder = next((c for c in candidates if c.subject == response.responder_name), None)
        if responder is None:
            return "the responder's certificate is not in the response"
        if responder != issuer:
            try:
                responder.verify_directly_issued_by(issuer)
                usages = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
                return "the responder was not certified by the issuing CA for OCSP signing"
            if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
                return "the responder was not certified by the issuing CA for OCSP signing"
            if not responder.not_valid_before_utc <= now <= responder.not_valid_after_utc:
                return "the responder's certificate is not valid now"
        if not signature_valid(responder.public_key(), response.signature, response.tbs_response_bytes,
                                response.signature_hash_algorithm):
            return "the response's signature does not verify"
        return None


@dataclass
class _CachedCrl:
    crl: x509.CertificateRevocationList
    next_update: dt.datetime
    verified_issuers: set[bytes]


class CrlRevocation:
    """Statuses from CRLs, each kept until its nextUpdate.

    ``urls`` lists the CRLs to consult (e.g. the platform's ``/pki/crl/issuing.crl`` and
    ``/pki/crl/root.crl``); without them, each certificate's CRL distribution points are used.
    Only a CRL issued and signed by the certificate's issuer is believed.
    """

    source = "crl"

    def __init__(self, client: httpx.Client, urls: Sequence[str] | None = None, *,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._client = client
        self._urls = list(urls) if urls else None
        self._clock = clock
        self._cache: dict[str, _CachedCrl] = {}
        self._lock = threading.Lock()

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """Revoked when the issuer's current CRL lists the certificate, good when it does not."""
        urls = self._urls or self._distribution_points(certificate)
        if not urls:
            return _unknown(self.source, "the certificate names no CRL")
        now = self._clock()
        detail = "no current CRL of the issuer was found"
        for url in urls:
            try:
                cached = self._crl(url, now)
                if cached.crl.issuer != issuer.subject:
                    continue
                if not self._signed_by(cached, issuer):
                    detail = f"the CRL at {url} is not signed by its issuer"
                    continue
                return self._listed(cached.crl, certificate)
            except _FetchError as exc:
                detail = str(exc)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                detail = f"the CRL at {url} cannot be read"
        return _unknown(self.source, detail)

    def _listed(self, crl: x509.CertificateRevocationList, certificate: x509.Certificate) -> CertificateStatus:
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is None:
            return CertificateStatus(GOOD, source=self.source)
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        return _revoked(self.source, entry.revocation_date_utc, reason)

    @staticmethod
    def _distribution_points(certificate: x509.Certificate) -> list[str]:
        try:
            points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except (x509.ExtensionNotFound, ValueError):
            return []
        return [u for point in points for u in _uris(point.full_name)]

    def _crl(self, url: str, now: dt.datetime) -> _CachedCrl:
        """The CRL at ``url``, fetched again once the cached one reached its nextUpdate."""
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and now < cached.next_update:
            return cached
        crl = x509.load_der_x509_crl(_fetch(self._client, "GET", url, max_bytes=MAX_CRL_BYTES))
        next_update = crl.next_update_utc
        if next_update is None or next_update <= now:
            raise _FetchError(f"the CRL at {url} is not current")
        fresh = _CachedCrl(crl, next_update, set())
        with self._lock:
            self._cache[url] = fresh
        return fresh

    def _signed_by(self, cached: _CachedCrl, issuer: x509.Certificate) -> bool:
        fingerprint = issuer.fingerprint(hashes.SHA256())
        if fingerprint in cached.verified_issuers:
            return True
        try:
            valid = cached.crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError, UnsupportedAlgorithm):
            valid = False
        if valid:
            with self._lock:
                cached.verified_issuers.add(fingerprint)
        return valid


_CERTIFICATE_STATUS = (  # built once: verification runs it for every certificate of every chain
    select(IssuedCertificate.status, IssuedCertificate.revoked_at, IssuedCertificate.revocation_reason,
           IssuedCertificate.fingerprint_sha256)
    .where(IssuedCertificate.serial_hex == bindparam("serial"))
)


class CertificateRecord(NamedTuple):
    """The CA's record of one certificate, as :func:`status_from_record` reads it."""

    status: str
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    fingerprint_sha256: str


def status_from_record(record: CertificateRecord | None, certificate: x509.Certificate,
                       source: str = "database") -> CertificateStatus:
    """The status the CA's record (None: no record under the serial) gives ``certificate``."""
    if record is None or record.fingerprint_sha256 != certificate.fingerprint(hashes.SHA256()).hex():
        return _unknown(source, "the platform's CA did not issue this certificate")
    if record.status in (REVOKED, ON_HOLD):
        return CertificateStatus(record.status, record.revoked_at, record.revocation_reason, source)
    if record.status == GOOD:
        return CertificateStatus(GOOD, source=source)
    return _unknown(source, f"the CA records the status {record.status!r}")


class DatabaseRevocation:
    """Statuses straight from the CA's records (:class:`ca.models.IssuedCertificate`).

    ``session_factory`` returns a context manager yielding a session, e.g.
    ``lambda: Session(engine)``. A certificate whose serial the CA used for another
    certificate (by fingerprint) is ``unknown``: the platform did not issue it.

    ``known`` holds records already read with the rest of a request's reads (serial → record,
    None when the CA has none): those serials are not asked again.
    """

    source = "database"

    def __init__(self, session_factory: Callable[[], AbstractContextManager[Session]],
                 known: Mapping[str, CertificateRecord | None] | None = None) -> None:
        self._session_factory = session_factory
        self._known = known or {}

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        """The recorded status, revocation time and reason."""
        serial = format(certificate.serial_number, "x")
        if serial in self._known:
            return status_from_record(self._known[serial], certificate, self.source)
        with self._session_factory() as session:
            row = session.connection().execute(_CERTIFICATE_STATUS, {"serial": serial}).one_or_none()
        return status_from_record(None if row is None else CertificateRecord(*row), certificate, self.source)
