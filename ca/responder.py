"""The OCSP responder: answers requests from pre-signed responses, signs only when needed.

Requests without a nonce for a known certificate are answered from the stored responses by a
single indexed read, without a thread hop or an ORM session (the path every relying party
hits). A response is signed on demand when a nonce must be echoed, for a serial the CA never
issued, for a CertID hash that is not pre-generated, or when the stored one has passed half
its validity (it is then stored again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ca.context import CA_NAMES, Pki
from ca.models import CertificateAuthority, IssuedCertificate
from ca.ocsp import (
    MALFORMED,
    PREGENERATED_HASHES,
    SUPPORTED_HASHES,
    TRY_LATER,
    UNAUTHORIZED,
    store_response,
    build_response,
    issuer_hashes,
    responder_for,
)
from core.db import session_scope

# The stored-response read is the responder's hot path: plain DB-API on a connection kept
# per thread, no ORM or Core statement processing (measured at several times the cost).
_SELECT_STORED_SQL = (
    "SELECT der, this_update, next_update FROM ca_ocsp_response "
    "WHERE ca_name = {p} AND serial_hex = {p} AND hash_algorithm = {p}"
)


def _as_utc(value: object) -> dt.datetime:
    # SQLite hands raw connections the stored text; PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"a timestamp column held {type(value).__name__}")
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class OcspAnswer:
    """Bytes to send, and when they stop being fresh (None for error responses)."""

    der: bytes
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    cacheable: bool = False


@dataclass(frozen=True)
class OcspQuery:
    """A parsed, well-formed single-certificate request for one of our CAs."""

    ca_name: str
    serial_hex: str
    hash_algorithm: str
    nonce: bytes | None


class OcspService:
    """Answers OCSP requests for the platform's CAs.

    ``read_engine`` serves stored responses; ``write_engine`` is used only when a response
    has to be (re)generated.
    """

    def __init__(self, pki: Pki, read_engine: Engine, write_engine: Engine) -> None:
        self.pki = pki
        self.read_engine = read_engine
        self.write_engine = write_engine
        self._issuers: dict[tuple[str, bytes, bytes], str] = {}
        self._local = threading.local()
        placeholder = "?" if read_engine.dialect.paramstyle == "qmark" else "%s"
        self._select_stored = _SELECT_STORED_SQL.format(p=placeholder)

    def respond(self, request_der: bytes) -> OcspAnswer:
        """Answer one DER-encoded OCSP request; never raises for bad input."""
        parsed = self.parse(request_der)
        if isinstance(parsed, OcspAnswer):
            return parsed
        return self.stored(parsed) or self.generate(parsed)

    def parse(self, request_der: bytes) -> OcspQuery | OcspAnswer:
        """Turn request bytes into a query, or into the error response they deserve.

        Anything the parser rejects (bad DER, zero or several requests, duplicate or
        critical unknown extensions, a nonce outside RFC 8954's 1–32 bytes) is
        ``malformedRequest``; a CertID hash we do not know is ``unauthorized``.
        """
        try:
            request = x509_ocsp.load_der_ocsp_request(request_der)
            serial_number = request.serial_number
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
            extensions = request.extensions
        except Exception:  # the parser refuses in many ways (ValueError, unsupported shapes, …)
            return OcspAnswer(MALFORMED)
        try:
            alg_name = request.hash_algorithm.name
        except UnsupportedAlgorithm:
            return OcspAnswer(UNAUTHORIZED)
        nonce = None
        for extension in extensions:
            if isinstance(extension.value, x509.OCSPNonce):
                nonce = extension.value.nonce
            elif extension.critical:
                return OcspAnswer(MALFORMED)
        if nonce is not None and not 1 <= len(nonce) <= 32:
            return OcspAnswer(MALFORMED)
        if alg_name not in SUPPORTED_HASHES:
            return OcspAnswer(UNAUTHORIZED)
        if serial_number <= 0 or serial_number.bit_length() > 160:
            return OcspAnswer(MALFORMED)
        ca_name = self._issuer_index().get((alg_name, name_hash, key_hash))
        if ca_name is None:
            return OcspAnswer(UNAUTHORIZED)
        return OcspQuery(ca_name, format(serial_number, "x"), alg_name, nonce)

    def stored(self, query: OcspQuery) -> OcspAnswer | None:
        """The pre-signed response for ``query`` if it may be served as is."""
        if query.nonce is not None or query.hash_algorithm not in PREGENERATED_HASHES:
            return None
        row = self._read_stored(query)
        if row is None:
            return None
        der, this_update, next_update = bytes(row[0]), _as_utc(row[1]), _as_utc(row[2])
        if self._stale(this_update, next_update):
            return None
        return OcspAnswer(der, this_update, next_update, True)

    def _read_stored(self, query: OcspQuery) -> tuple | None:
        params = (query.ca_name, query.serial_hex, query.hash_algorithm)
        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = self.read_engine.raw_connection()
                self._local.connection = connection
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(self._select_stored, params)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
                connection.commit()  # end the read transaction (PostgreSQL) so it sees new data
                return row
            except Exception:
                # A dropped connection: discard it and try once more with a new one.
                self._local.connection = None
                with contextlib.suppress(Exception):
                    connection.invalidate()
                if attempt == 2:
                    raise
        return None

    def generate(self, query: OcspQuery) -> OcspAnswer:
        """Sign a response now; store it when it may be reused (no nonce, a stored hash)."""
        if query.nonce is not None or query.hash_algorithm not in PREGENERATED_HASHES:
            return self._sign_for_this_request(query)
        try:
            with session_scope(self.write_engine) as session:
                # FOR UPDATE: wait for a revocation in flight, so a response signed here can
                # never overwrite the newer status that revocation is storing.
                row = self._certificate(session, query, lock=True)
                if row is None:
                    return self._sign(session, query, None)
                refreshed = self.stored(query)  # another request may have re-signed it meanwhile
                if refreshed is not None:
                    return refreshed
                answer = self._sign(session, query, row)
                if answer.cacheable:
                    store_response(session, {
                        "ca_name": query.ca_name, "serial_hex": query.serial_hex,
                        "hash_algorithm": query.hash_algorithm, "this_update": answer.this_update,
                        "next_update": answer.next_update, "der": answer.der,
                    })
                return answer
        except IntegrityError:
            # Another worker stored the same response at the same moment: serve theirs.
            return self.stored(query) or OcspAnswer(TRY_LATER)

    def _sign_for_this_request(self, query: OcspQuery) -> OcspAnswer:
        # Nothing is stored, so a plain read suffices: no write lock for unauthenticated callers.
        with Session(self.read_engine) as session:
            return self._sign(session, query, self._certificate(session, query, lock=False))

    def _certificate(self, session: Session, query: OcspQuery, *, lock: bool) -> IssuedCertificate | None:
        statement = (select(IssuedCertificate).where(IssuedCertificate.serial_hex == query.serial_hex)
                     .where(IssuedCertificate.ca_name == query.ca_name))
        return session.execute(statement.with_for_update() if lock else statement).scalar_one_or_none()

    def _sign(self, session: Session, query: OcspQuery, row: IssuedCertificate | None) -> OcspAnswer:
        ca = self.pki.load_ca(session, query.ca_name)
        responder = responder_for(session, self.pki, ca)
        if responder is None:
            return OcspAnswer(TRY_LATER)
        der, this_update, next_update = build_response(
            self.pki, ca_cert=self.pki.ca_certificate(ca), responder=responder,
            serial_number=int(query.serial_hex, 16), algorithm=SUPPORTED_HASHES[query.hash_algorithm],
            row=row, nonce=query.nonce,
        )
        return OcspAnswer(der, this_update, next_update, query.nonce is None and row is not None)

    def _stale(self, this_update: dt.datetime, next_update: dt.datetime) -> bool:
        # Re-sign once half the validity has passed, so clients never see an expired answer.
        return self.pki.clock() >= this_update + (next_update - this_update) / 2

    def _issuer_index(self) -> dict[tuple[str, bytes, bytes], str]:
        if not self._issuers:
            index: dict[tuple[str, bytes, bytes], str] = {}
            with Session(self.read_engine) as session:
                for name in CA_NAMES:
                    if session.get(CertificateAuthority, name) is None:
                        return {}
                    cert = self.pki.ca_certificate(self.pki.load_ca(session, name))
                    for alg_name, alg in SUPPORTED_HASHES.items():
                        index[(alg_name, *issuer_hashes(cert, alg))] = name
            self._issuers = index
        return self._issuers
