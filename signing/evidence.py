"""Verification on the platform's side, for brokers, and the evidence log it leaves.

The platform verifies with what only it has: the CA's own records for revocation and the
signature log for the signing time. The HSM made every signature of an investor's key and
the log recorded when (:class:`signing.models.SignatureRecord`, its ``digest_hex`` being the
digest of the CMS's signed attributes), so a signature is judged at that time and never at
the time its signer claims. Every verification a broker asks for is recorded as
:class:`signing.models.VerificationEvidence` under the broker's code; a broker lists only
its own records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import bindparam, func, insert, select
from sqlmodel import Session

from ca.context import CA_NAMES, Pki
from core.auth import Actor, Role, require_role
from core.errors import Forbidden
from signing.cms import signed_attributes_digest
from signing.cms_parse import ParsedCms
from signing.models import SignatureRecord, VerificationEvidence
from signing.revocation import CertificateRecord, DatabaseRevocation
from signing.verifier import VerificationResult, Verifier

VERIFY_ROLES = (Role.BROKER_BACKOFFICE, Role.OPERATOR)
SessionFactory = Callable[[], AbstractContextManager[Session]]


FIRST_SIGNED_AT = (  # built once: every verification asks it
    select(SignatureRecord.signed_at)
    .where(SignatureRecord.certificate_serial == bindparam("serial"))
    .where(SignatureRecord.digest_hex == bindparam("digest"))
    .where(SignatureRecord.hash_algorithm == bindparam("hash_algorithm"))
    .order_by(SignatureRecord.signed_at).limit(1)  # type: ignore[arg-type]
)


_INSERT_EVIDENCE = insert(VerificationEvidence).returning(VerificationEvidence.id)


SigningTimeKey = tuple[str, str, str]  # signer serial (hex), signed attributes' digest (hex), hash algorithm


def signing_time_key(parsed: ParsedCms) -> SigningTimeKey:
    """What the signature log is searched by for ``parsed``."""
    digest = signed_attributes_digest(parsed.signed_attributes, parsed.digest_algorithm)
    return format(parsed.signer_certificate.serial_number, "x"), digest.hex(), parsed.digest_algorithm


class DatabaseSignatureLog:
    """The platform's signature log as a :class:`signing.verifier.SignatureLog`.

    ``known`` holds answers already read with the rest of a request's reads (key → first
    signing time, None when never signed): those are not asked again.
    """

    def __init__(self, session_factory: SessionFactory,
                 known: Mapping[SigningTimeKey, dt.datetime | None] | None = None) -> None:
        self._session_factory = session_factory
        self._known = known or {}

    def signed_at(self, parsed: ParsedCms) -> dt.datetime | None:
        """When the HSM first signed these signed attributes with the signer certificate's key."""
        key = signing_time_key(parsed)
        if key in self._known:
            return self._known[key]
        serial, digest, hash_algorithm = key
        with self._session_factory() as session:
            return session.connection().execute(FIRST_SIGNED_AT, {
                "serial": serial, "digest": digest, "hash_algorithm": hash_algorithm}).scalar_one_or_none()


def platform_verifier(session: Session, pki: Pki, *,
                      known_records: Mapping[str, CertificateRecord | None] | None = None,
                      known_signing_times: Mapping[SigningTimeKey, dt.datetime | None] | None = None) -> Verifier:
    """A verifier trusting the platform's root, with its issuing CA as intermediate, reading
    revocation and signing times from the database through ``session`` (except those a
    caller read already, passed as ``known_records`` and ``known_signing_times``)."""
    cas = [pki.ca_certificate(pki.load_ca(session, name)) for name in CA_NAMES]
    anchors = [c for c in cas if c.subject == c.issuer]
    reader: SessionFactory = lambda: nullcontext(session)  # the caller's session, left open
    return Verifier(anchors, DatabaseRevocation(reader, known_records),
                    intermediates=[c for c in cas if c not in anchors],
                    signature_log=DatabaseSignatureLog(reader, known_signing_times), clock=pki.clock)


def verifying_broker(actor: Actor) -> str | None:
    """The broker a verification is recorded for: the back office's own; None for operators."""
    require_role(actor, *VERIFY_ROLES)
    if actor.role is Role.BROKER_BACKOFFICE:
        if not actor.tenant:
            raise Forbidden("a broker back-office token must name its broker", code="tenant_required")
        return actor.tenant
    return None


def _printable(text: str | None, limit: int) -> str | None:
    """Text from a certificate as a column can hold it (no control characters, bounded)."""
    if text is None:
        return None
    return "".join(c for c in text if c.isprintable())[:limit]


def verify_for_broker(
    session: Session, pki: Pki, *, actor: Actor, cms: bytes | str, content: bytes | None = None,
    digest: bytes | None = None, digest_algorithm: str = "sha256", read_session: Session | None = None,
) -> tuple[VerificationResult, VerificationEvidence]:
    """Verify a signature for the caller's broker and record the evidence.

    Reads (CA records, signature log) go through ``read_session`` when given, so on SQLite
    the write lock is taken only for the evidence row.
    """
    broker_code = verifying_broker(actor)
    result = platform_verifier(read_session or session, pki).verify(
        cms, content=content, digest=digest, digest_algorithm=digest_algorithm)
    signer = result.signer
    evidence = VerificationEvidence(
        broker_code=broker_code, document_digest=(result.document_digest or "")[:128] or None,
        cms_sha256=result.cms_sha256, signer_serial=_printable(signer.serial if signer else None, 42),
        signer_reference=_printable(signer.reference if signer else None, 64), valid=result.valid,
        reason=result.reason, signing_time=result.signing_time, signing_time_source=result.signing_time_source,
        checked_at=result.checked_at, checked_by=actor.label[:200],
    )
    evidence.id = session.connection().execute(
        _INSERT_EVIDENCE, evidence.model_dump(exclude={"id"})).scalar_one()
    return result, evidence


def list_evidence(session: Session, actor: Actor, *, document_digest: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[list[VerificationEvidence], int]:
    """The caller's broker's evidence (every broker's for an operator), newest first, and
    how many there are in all; ``document_digest`` (hex) narrows it to one document."""
    broker_code = verifying_broker(actor)
    statement = select(VerificationEvidence)
    if actor.role is Role.BROKER_BACKOFFICE:
        statement = statement.where(VerificationEvidence.broker_code == broker_code)
    if document_digest is not None:
        statement = statement.where(VerificationEvidence.document_digest == document_digest.lower())
    total = session.execute(select(func.count()).select_from(statement.subquery())).scalar_one()
    page = session.execute(
        statement.order_by(VerificationEvidence.id.desc()).offset(offset).limit(limit)  # type: ignore[union-attr]
    ).scalars()
    return list(page), total

