"""What the CA services need besides a database session: the HSM, URLs, clocks, caches."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ca.models import CertificateAuthority
from ca.profiles import DEFAULT_POLICY_ARC
from core.db import utcnow
from core.errors import NotFound
from hsm_sim.base import KeyStore
from hsm_sim.facade import hsm_private_key

CA_NAMES = ("root", "issuing")
# How long a process keeps using the OCSP signer it looked up before checking for a newer
# one (renewal happens with a third of the old signer's life left, so any cached one is valid).
_RESPONDER_CACHE_SECONDS = 60.0
# How long a confirmed-good responder is trusted before its status is read again.
_RESPONDER_STATUS_SECONDS = 2.0


@dataclass(frozen=True)
class Authority:
    """The immutable facts of a CA (its CRL counter lives in the database row)."""

    name: str
    key_label: str
    key_owner: str
    certificate_der: bytes


CaLike = Authority | CertificateAuthority


@dataclass
class Pki:
    """The CA's collaborators, built once per process and passed to every CA service call."""

    keystore: KeyStore
    public_base: str
    organization: str = "cloudseal"
    country: str = "TW"
    policy_arc: str = DEFAULT_POLICY_ARC
    crl_validity: dt.timedelta = dt.timedelta(hours=24)
    ocsp_validity: dt.timedelta = dt.timedelta(hours=24)
    serial_source: Callable[[], int] = x509.random_serial_number
    # Where checks that must not take a write lock read from (SQLite: the lock-free engine).
    read_engine: Engine | None = None
    clock: Callable[[], dt.datetime] = utcnow
    # RFC 3161 timestamp authority for sealed PDF reports (PAdES B-LTA); None: no timestamps.
    tsa_url: str | None = None
    _ca_certs: dict[str, x509.Certificate] = field(default_factory=dict, repr=False)
    _authorities: dict[str, Authority] = field(default_factory=dict, repr=False)
    _signing_keys: dict[tuple[str, str], object] = field(default_factory=dict, repr=False)
    _responder: tuple[object, dt.datetime, float] | None = field(default=None, repr=False)
    _responder_checked: float = field(default=-1e9, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # URLs placed in certificates ---------------------------------------------------------
    def crl_url(self, ca_name: str) -> str:
        return f"{self.public_base}/pki/crl/{ca_name}.crl"

    def ca_issuers_url(self, ca_name: str) -> str:
        return f"{self.public_base}/pki/{ca_name}.crt"

    @property
    def ocsp_url(self) -> str:
        return f"{self.public_base}/pki/ocsp"

    # CA material -------------------------------------------------------------------------
    def load_ca(self, session: Session, ca_name: str) -> Authority:
        """The CA, or 404 ``unknown_ca``. A CA never changes once created, so it is cached."""
        with self._lock:
            cached = self._authorities.get(ca_name)
        if cached is not None:
            return cached
        row = session.get(CertificateAuthority, ca_name) if ca_name in CA_NAMES else None
        if row is None:
            raise NotFound(f"no certificate authority named {ca_name!r}", code="unknown_ca")
        authority = Authority(name=row.name, key_label=row.key_label, key_owner=row.key_owner,
                              certificate_der=row.certificate_der)
        with self._lock:
            self._authorities[ca_name] = authority
        return authority

    def ca_certificate(self, ca: CaLike) -> x509.Certificate:
        """The parsed CA certificate (CA certificates never change once created)."""
        with self._lock:
            cert = self._ca_certs.get(ca.name)
            if cert is None:
                cert = x509.load_der_x509_certificate(ca.certificate_der)
                self._ca_certs[ca.name] = cert
            return cert

    def cached_responder(self) -> object | None:
        """The delegated OCSP responder remembered by :meth:`remember_responder`, if fresh."""
        with self._lock:
            entry = self._responder
        if entry is None:
            return None
        responder, not_after, remembered_at = entry
        now = self.clock()
        if now >= not_after or time.monotonic() - remembered_at > _RESPONDER_CACHE_SECONDS:
            return None
        return responder

    def remember_responder(self, responder: object, not_after: dt.datetime) -> None:
        with self._lock:
            self._responder = (responder, not_after, time.monotonic())
            self._responder_checked = time.monotonic()

    def responder_checked_recently(self) -> bool:
        """Whether the cached responder's status was confirmed in the last couple of seconds."""
        return time.monotonic() - self._responder_checked < _RESPONDER_STATUS_SECONDS

    def mark_responder_checked(self) -> None:
        self._responder_checked = time.monotonic()

    def forget_responder(self) -> None:
        """Called when a new OCSP signer is issued, so this process switches to it at once."""
        with self._lock:
            self._responder = None
            self._responder_checked = -1e9

    def signing_key(self, label: str, owner: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        """A private-key facade whose signatures are made by the HSM.

        Facades hold no key material (only label, owner and public key), so they are cached;
        a destroyed key still fails at the HSM on its next use.
        """
        with self._lock:
            key = self._signing_keys.get((label, owner))
        if key is None:
            key = hsm_private_key(self.keystore, label, owner)
            with self._lock:
                self._signing_keys[(label, owner)] = key
        return key  # type: ignore[return-value]


def signature_hash(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> hashes.HashAlgorithm:
    """The hash a key signs with: SHA-384 for P-384, SHA-256 otherwise (RSA: by size)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return hashes.SHA384() if public_key.curve.key_size >= 384 else hashes.SHA256()
    return hashes.SHA384() if public_key.key_size >= 3072 else hashes.SHA256()
