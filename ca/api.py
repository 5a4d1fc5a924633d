"""HTTP endpoints of the CA: the public PKI contracts and operator issuance/revocation."""

from __future__ import annotations

import email.utils
from typing import Annotated

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_public_key
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from ca import crl, ocsp_http, service
from ca.context import Pki
from ca.models import CertificateRow
from ca.ocsp import MALFORMED
from ca.ocsp_http import OCSP_RESPONSE_TYPE
from ca.schemas import CertificateOut, IssueRequest, RevokeRequest, SubjectIn
from core.auth import Role, require_role
from core.errors import BadRequest, NotFound
from core.web import ActorDep, ReadSessionDep, SessionDep

_ERRORS = {
    400: {"description": "Malformed input (code: malformed_pem, bad_csr_signature, invalid_serial, …)"},
    401: {"description": "Missing or invalid access token"},
    403: {"description": "The caller's role may not do this"},
    404: {"description": "Unknown CA (unknown_ca) or certificate (unknown_certificate)"},
    409: {"description": "Conflicting state (already_revoked, not_on_hold, …)"},
    413: {"description": "Request body too large"},
    422: {"description": "Request body does not match the schema"},
}

pki_router = APIRouter(prefix="/pki", tags=["pki"])
ca_router = APIRouter(prefix="/ca", tags=["ca"], responses=_ERRORS)


def get_pki(request: Request) -> Pki:
    """The process's CA context."""
    return request.app.state.pki


PkiDep = Annotated[Pki, Depends(get_pki)]


# Public PKI endpoints (no authentication) ----------------------------------------------

@pki_router.get("/chain.pem", response_class=Response, summary="Issuing and root CA, PEM")
def chain_pem(session: ReadSessionDep, pki: PkiDep) -> Response:
    pem = b"".join(
        pki.ca_certificate(pki.load_ca(session, name)).public_bytes(Encoding.PEM)
        for name in ("issuing", "root")
    )
    return Response(pem, media_type="application/pem-certificate-chain")


@pki_router.get("/{ca_name}.crt", response_class=Response, summary="A CA certificate, DER")
def ca_certificate(ca_name: str, session: ReadSessionDep, pki: PkiDep) -> Response:
    ca = pki.load_ca(session, ca_name)
    return Response(ca.certificate_der, media_type="application/pkix-cert")


@pki_router.get("/crl/{ca_name}.crl", response_class=Response, summary="The CA's current CRL, DER")
def ca_crl(ca_name: str, session: ReadSessionDep, pki: PkiDep) -> Response:
    pki.load_ca(session, ca_name)
    record = crl.current_crl(session, ca_name)
    if record is None:
        raise NotFound(f"CA {ca_name!r} has published no CRL yet", code="no_crl")
    return Response(
        record.der,
        media_type="application/pkix-crl",
        headers={
            "Last-Modified": email.utils.format_datetime(record.this_update, usegmt=True),
            "Expires": email.utils.format_datetime(record.next_update, usegmt=True),
        },
    )


@pki_router.post("/ocsp", response_class=Response, summary="OCSP (RFC 6960), DER request body",
                 responses={200: {"content": {OCSP_RESPONSE_TYPE: {}}}})
async def ocsp_post(request: Request) -> Response:
    result = await ocsp_http.answer(request.app.state.ocsp, await request.body())
    return Response(result.der, headers=ocsp_http.response_headers(result, http_cacheable=False))


@pki_router.get("/ocsp/{encoded:path}", response_class=Response, summary="OCSP (RFC 6960) by GET",
                responses={200: {"content": {OCSP_RESPONSE_TYPE: {}}}})
async def ocsp_get(encoded: str, request: Request) -> Response:
    der = ocsp_http.decode_get_path(encoded)
    if der is None:
        return Response(MALFORMED, media_type=OCSP_RESPONSE_TYPE)
    result = await ocsp_http.answer(request.app.state.ocsp, der)
    return Response(result.der, headers=ocsp_http.response_headers(result, http_cacheable=True))


# Operator endpoints -----------------------------------------------------------------------

def _certificate_out(row: CertificateRow) -> CertificateOut:
    pem = x509.load_der_x509_certificate(row.der).public_bytes(Encoding.PEM).decode()
    return CertificateOut(
        serial=row.serial_hex, ca=row.ca_name, profile=row.profile, subject=row.subject,
        status=row.status, not_before=row.not_before, not_after=row.not_after,
        revoked_at=row.revoked_at, revocation_reason=row.revocation_reason,
        invalidity_date=row.invalidity_date, certificate_pem=pem,
    )


def _subject_name(subject: SubjectIn) -> x509.Name:
    attributes = [
        (NameOID.COUNTRY_NAME, subject.country),
        (NameOID.ORGANIZATION_NAME, subject.organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.organizational_unit),
        (NameOID.COMMON_NAME, subject.common_name),
        (NameOID.SERIAL_NUMBER, subject.serial_number),
    ]
    try:
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes if value])
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_subject") from exc


_CSR_ATTRIBUTES = {
    NameOID.COMMON_NAME: "common_name", NameOID.SERIAL_NUMBER: "serial_number",
    NameOID.ORGANIZATION_NAME: "organization", NameOID.ORGANIZATIONAL_UNIT_NAME: "organizational_unit",
    NameOID.COUNTRY_NAME: "country",
}


def _subject_from_csr(csr: x509.CertificateSigningRequest) -> SubjectIn:
    """The CSR's subject under the profile's name rules: known attributes, once each."""
    values: dict[str, str] = {}
    for attribute in csr.subject:
        field = _CSR_ATTRIBUTES.get(attribute.oid)
        if field is None or field in values or not isinstance(attribute.value, str):
            raise BadRequest("the CSR subject may hold CN, serialNumber, O, OU and C, once each",
                             code="invalid_subject")
        values[field] = attribute.value
    try:
        return SubjectIn(**values)
    except ValidationError as exc:
        raise BadRequest(f"the CSR subject breaks the name rules: {exc.errors()[0]['msg']}",
                         code="invalid_subject") from exc


def _requested_key_and_subject(body: IssueRequest) -> tuple[object, x509.Name]:
    if (body.csr_pem is None) == (body.public_key_pem is None):
        raise BadRequest("send exactly one of csr_pem and public_key_pem", code="invalid_request")
    if body.csr_pem is not None:
        try:
            csr = x509.load_pem_x509_csr(body.csr_pem.encode())
            public_key = csr.public_key()
            signature_ok = csr.is_signature_valid
        except UnsupportedAlgorithm as exc:
            raise BadRequest("the CSR's key or signature algorithm is not supported", code="unsupported_key") from exc
        except (ValueError, TypeError) as exc:
            raise BadRequest("csr_pem is not a PEM certificate request", code="malformed_pem") from exc
        if not signature_ok:
            raise BadRequest("the CSR's signature does not verify", code="bad_csr_signature")
        subject = body.subject or _subject_from_csr(csr)
        return public_key, _subject_name(subject)
    if body.subject is None:
        raise BadRequest("a public key needs a subject", code="invalid_request")
    try:
        public_key = load_pem_public_key(body.public_key_pem.encode())  # type: ignore[union-attr]
    except UnsupportedAlgorithm as exc:
        raise BadRequest("the key algorithm is not supported", code="unsupported_key") from exc
    except (ValueError, TypeError) as exc:
        raise BadRequest("public_key_pem is not a PEM public key", code="malformed_pem") from exc
    return public_key, _subject_name(body.subject)


@ca_router.post("/{ca_name}/certificates", response_model=CertificateOut, status_code=201,
                summary="Issue a certificate (operator)")
def issue(ca_name: str, body: IssueRequest, session: SessionDep, pki: PkiDep, actor: ActorDep) -> CertificateOut:
    require_role(actor, Role.OPERATOR)
    pki.load_ca(session, ca_name)
    public_key, subject = _requested_key_and_subject(body)
    row = service.issue_certificate(
        session, pki, actor=actor, ca_name=ca_name, profile_name=body.profile,
        subject=subject, public_key=public_key,
    )
    session.commit()
    return _certificate_out(row)


@ca_router.get("/certificates/{serial}", response_model=CertificateOut, summary="A certificate and its status")
def show(serial: str, session: SessionDep, actor: ActorDep) -> CertificateOut:
    require_role(actor, Role.OPERATOR, Role.AUDITOR)
    return _certificate_out(service.get_certificate(session, serial))


@ca_router.post("/certificates/{serial}/revoke", response_model=CertificateOut,
                summary="Revoke or suspend (certificateHold) a certificate (operator)")
def revoke(serial: str, body: RevokeRequest, session: SessionDep, pki: PkiDep, actor: ActorDep) -> CertificateOut:
    require_role(actor, Role.OPERATOR)
    row = service.revoke_certificate(
        session, pki, actor=actor, serial=serial, reason=body.reason,
        invalidity_date=body.invalidity_date,
    )
    session.commit()
    return _certificate_out(row)


@ca_router.post("/certificates/{serial}/release", response_model=CertificateOut,
                summary="Release a certificate from hold (operator)")
def release(serial: str, session: SessionDep, pki: PkiDep, actor: ActorDep) -> CertificateOut:
    require_role(actor, Role.OPERATOR)
    row = service.release_hold(session, pki, actor=actor, serial=serial)
    session.commit()
    return _certificate_out(row)
