"""``POST /signing/verify`` and the broker's evidence log ``GET /signing/verifications``.

A signature that fails verification is an answer, not an error: 200 with ``valid: false``
and a stable ``reason``. Only a request the caller got wrong (no document, both content and
digest, an undecodable digest) is a 4xx in the platform's error envelope.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from core.auth import require_role
from core.errors import BadRequest
from core.validation import DB_ID_MAX
from core.web import ActorDep, ReadSessionDep, request_sessions
from signing import evidence
from signing.models import VerificationEvidence
from signing.verifier import VerificationResult, decode_digest

ReasonCode = Literal["malformed", "digest_mismatch", "bad_signature", "untrusted_chain", "not_yet_valid",
                     "expired", "revoked", "on_hold", "unsupported_algorithm", "revocation_unknown"]
Status = Literal["good", "revoked", "on_hold", "unknown"]
SigningTimeSource = Literal["platform_log", "signer_claim", "none"]

_ERRORS = {
    400: {"description": "Malformed request (invalid_request, invalid_content, invalid_digest, "
                         "unsupported_algorithm, malformed_json)"},
    401: {"description": "Missing or invalid access token"},
    403: {"description": "Not a broker back office or an operator (forbidden_role, tenant_required)"},
    413: {"description": "Request body too large"},
    422: {"description": "Request body does not match the schema"},
}

verify_router = APIRouter(prefix="/signing", tags=["verification"], responses=_ERRORS)


class VerifyIn(BaseModel):
    """A signature and the document it should sign: its content or its digest."""

    model_config = ConfigDict(extra="forbid")

    cms: str = Field(description="the detached CMS: base64 of its DER, or PEM")
    content_base64: str | None = Field(default=None, description="the document, base64")
    digest: str | None = Field(default=None, max_length=200, description="the document's digest, hex or base64")
    digest_algorithm: str = Field(default="sha256", max_length=16, description="sha256, sha384 or sha512")


class SignerOut(BaseModel):
    reference: str | None = Field(description="the investor reference (certificate subject serialNumber)")
    subject: str = Field(description="the certificate subject, RFC 4514")
    serial: str = Field(description="the certificate serial number, lower-case hex")


class VerificationOut(BaseModel):
    valid: bool
    reason: ReasonCode | None = Field(description="why the signature is not valid; null when valid")
    message: str | None
    signer: SignerOut | None
    signing_time: dt.datetime | None = Field(description="from the platform's signature log; null if unlogged")
    signing_time_source: SigningTimeSource
    claimed_signing_time: dt.datetime | None = Field(description="the signingTime the signer put in the CMS")
    logged: bool | None = Field(description="whether the platform's signature log has this signature")
    status_at_signing: Status
    status_now: Status
    revocation_time: dt.datetime | None
    revocation_reason: str | None
    chain: list[str] = Field(description="subjects from the signer to the root")
    digest_algorithm: str | None
    document_digest: str | None = Field(description="hex")
    cms_sha256: str
    checked_at: dt.datetime
    evidence_id: int

    @classmethod
    def of(cls, result: VerificationResult, evidence_id: int) -> VerificationOut:
        return cls.model_validate({**dataclasses.asdict(result), "evidence_id": evidence_id})


class EvidenceOut(BaseModel):
    id: int
    broker_code: str | None
    document_digest: str | None
    cms_sha256: str
    signer_serial: str | None
    signer_reference: str | None
    valid: bool
    reason: str | None
    signing_time: dt.datetime | None
    signing_time_source: str
    checked_at: dt.datetime
    checked_by: str


class EvidencePage(BaseModel):
    items: list[EvidenceOut]
    total: int
    offset: int
    limit: int


def _document(body: VerifyIn) -> tuple[bytes | None, bytes | None]:
    """The content or the digest, decoded; 400 when the request does not name exactly one."""
    if (body.content_base64 is None) == (body.digest is None):
        raise BadRequest("send exactly one of content_base64 and digest", code="invalid_request")
    if body.content_base64 is not None:
        try:
            return base64.b64decode(body.content_base64, validate=True), None
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("content_base64 is not base64", code="invalid_content") from exc
    if body.digest_algorithm.lower() not in ("sha256", "sha384", "sha512"):
        raise BadRequest(f"digest algorithm {body.digest_algorithm!r} is not supported", code="unsupported_algorithm")
    try:
        return None, decode_digest(body.digest or "", body.digest_algorithm)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_digest") from exc


@verify_router.post("/verify", response_model=VerificationOut,
                    summary="Verify a detached CMS signature over a document (broker back office, operator)")
def verify(body: VerifyIn, request: Request, actor: ActorDep) -> VerificationOut:
    require_role(actor, *evidence.VERIFY_ROLES)
    content, digest = _document(body)
    with request_sessions(request) as (session, read_session):
        result, record = evidence.verify_for_broker(
            session, request.app.state.pki, actor=actor, cms=body.cms, content=content, digest=digest,
            digest_algorithm=body.digest_algorithm.lower(), read_session=read_session)
    return VerificationOut.of(result, record.id or 0)


def _evidence_out(record: VerificationEvidence) -> EvidenceOut:
    return EvidenceOut.model_validate(record, from_attributes=True)


@verify_router.get("/verifications", response_model=EvidencePage,
                   summary="The caller's broker's verification evidence, newest first")
def verifications(session: ReadSessionDep, actor: ActorDep,
                  document_digest: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64,128}$")] = None,
                  offset: Annotated[int, Query(ge=0, le=DB_ID_MAX)] = 0,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> EvidencePage:
    items, total = evidence.list_evidence(session, actor, document_digest=document_digest, offset=offset,
                                          limit=limit)
    return EvidencePage(items=[_evidence_out(r) for r in items], total=total, offset=offset, limit=limit)
