"""RA endpoints for officers and operators, and the app-facing activation and self-service."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Path, Query, Request
from sqlmodel import Session

from ca.context import Pki
from core.auth import Actor, Role, require_role
from core.db import committing_refusals
from core.errors import Conflict, NotFound
from core.validation import DB_ID_MAX
from core.web import ActorDep, SessionDep, request_sessions
from ra import credentials, devices, queries, service
from ra.models import Credential, Enrolment, Investor
from ra.schemas import (
    ActivatedOut,
    AppRenewIn,
    AppRevokeIn,
    ApprovalOut,
    BrokerIn,
    BrokerOut,
    CertificateChainOut,
    ChallengeIn,
    ChallengeOut,
    CredentialStateOut,
    DeviceProof,
    DeviceReplacementIn,
    EnrolmentIn,
    EnrolmentOut,
    InvestorOut,
    InvestorPage,
    PinChangeIn,
    RedeemIn,
    RejectIn,
    RevokeIn,
)

_ERRORS = {
    400: {"description": "Malformed input (invalid_identity, weak_pin, invalid_reason, …)"},
    401: {"description": "Missing/invalid token, wrong PIN or device proof"},
    403: {"description": "Role not allowed, self_approval, pin_locked, activation_locked"},
    404: {"description": "Unknown or not visible to this tenant (unknown_investor, unknown_broker, …)"},
    409: {"description": "State conflict (duplicate_account_link, not_pending, already_revoked, …)"},
    413: {"description": "Request body too large"},
    422: {"description": "Request body does not match the schema"},
}

ra_router = APIRouter(prefix="/ra", tags=["ra"], responses=_ERRORS)
app_router = APIRouter(prefix="/ra", tags=["ra-app"], responses=_ERRORS)


def get_pki(request: Request) -> Pki:
    return request.app.state.pki


PkiDep = Annotated[Pki, Depends(get_pki)]
DbId = Annotated[int, Path(ge=1, le=DB_ID_MAX)]


def _enrolment_out(enrolment: Enrolment) -> EnrolmentOut:
    return EnrolmentOut(enrolment_id=enrolment.id or 0, investor_id=enrolment.investor_id,
                        broker_code=enrolment.broker_code, purpose=enrolment.purpose,
                        key_algorithm=enrolment.key_algorithm, status=enrolment.status,
                        submitted_by=enrolment.submitted_by, approved_by=enrolment.approved_by)


def _chain(pki: Pki, session: Session, certificate_der: bytes) -> list[str]:
    leaf = x509.load_der_x509_certificate(certificate_der).public_bytes(Encoding.PEM).decode()
    cas = [pki.ca_certificate(pki.load_ca(session, n)).public_bytes(Encoding.PEM).decode() for n in ("issuing", "root")]
    return [leaf, *cas]


# Brokers (operators) --------------------------------------------------------------------------

@ra_router.post("/brokers", response_model=BrokerOut, status_code=201, summary="Create a broker (operator)")
def create_broker(body: BrokerIn, session: SessionDep, actor: ActorDep) -> BrokerOut:
    require_role(actor, Role.OPERATOR)
    broker = service.create_broker(session, actor=actor, code=body.code, name=body.name, dual_control=body.dual_control)
    session.commit()
    return BrokerOut(code=broker.code, name=broker.name, dual_control=broker.dual_control, active=broker.active)


@ra_router.get("/brokers/{code}", response_model=BrokerOut, summary="A broker (operator or its own staff)")
def show_broker(code: Annotated[str, Path(pattern=r"^[A-Z0-9]{2,16}$")], session: SessionDep,
                actor: ActorDep) -> BrokerOut:
    if actor.role is not Role.OPERATOR and actor.tenant != code:
        raise NotFound(f"no broker {code!r}", code="unknown_broker")
    broker = service.get_broker(session, code)
    return BrokerOut(code=broker.code, name=broker.name, dual_control=broker.dual_control, active=broker.active)


# Enrolment -------------------------------------------------------------------------------------

@ra_router.post("/enrolments", response_model=EnrolmentOut, status_code=201, summary="Submit an enrolment")
def submit(body: EnrolmentIn, request: Request, session: SessionDep, actor: ActorDep) -> EnrolmentOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    enrolment = service.submit_enrolment(
        session, request.app.state.pki.keystore, actor=actor, broker_code=body.broker_code,
        id_kind=body.id_kind.value, id_number=body.id_number, name=body.name, birth_date=body.birth_date,
        contact_channel=body.contact_channel, accounts=body.accounts, proofing=body.proofing,
        key_algorithm=body.key_algorithm,
    )
    session.commit()
    return _enrolment_out(enrolment)


@ra_router.get("/enrolments/{enrolment_id}", response_model=EnrolmentOut, summary="An enrolment")
def show_enrolment(enrolment_id: DbId, session: SessionDep, actor: ActorDep) -> EnrolmentOut:
    return _enrolment_out(service.get_enrolment(session, actor, enrolment_id))


@ra_router.post("/enrolments/{enrolment_id}/approve", response_model=ApprovalOut, summary="Approve an enrolment")
def approve(enrolment_id: DbId, session: SessionDep, actor: ActorDep) -> ApprovalOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    with committing_refusals(session):
        enrolment, code = service.approve_enrolment(session, actor=actor, enrolment_id=enrolment_id)
    session.commit()
    return ApprovalOut(**_enrolment_out(enrolment).model_dump(), activation_code_sent=code is not None)


@ra_router.get("/enrolments", response_model=list[EnrolmentOut], summary="The broker's enrolments")
def list_enrolments(session: SessionDep, actor: ActorDep,
                    status: Annotated[str | None, Query(pattern=r"^(pending|approved|linked|activated|rejected)$")] = None,
                    offset: Annotated[int, Query(ge=0, le=DB_ID_MAX)] = 0,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[EnrolmentOut]:
    return [_enrolment_out(e) for e in service.list_enrolments(session, actor, status=status, offset=offset, limit=limit)]


@ra_router.post("/enrolments/{enrolment_id}/reject", response_model=EnrolmentOut, summary="Reject a pending enrolment")
def reject(enrolment_id: DbId, body: RejectIn, session: SessionDep, actor: ActorDep) -> EnrolmentOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    enrolment = service.reject_enrolment(session, actor=actor, enrolment_id=enrolment_id, reason=body.reason)
    session.commit()
    return _enrolment_out(enrolment)


@ra_router.post("/enrolments/{enrolment_id}/reissue-code", response_model=EnrolmentOut,
                summary="Send a new activation code (the last one expired, was locked or got lost)")
def reissue_code(enrolment_id: DbId, session: SessionDep, actor: ActorDep) -> EnrolmentOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    enrolment = service.reissue_code(session, actor=actor, enrolment_id=enrolment_id)
    session.commit()
    return _enrolment_out(enrolment)


# Investors -------------------------------------------------------------------------------------

@ra_router.get("/investors", response_model=InvestorPage, summary="List and search the caller's investors")
def list_investors(request: Request, session: SessionDep, actor: ActorDep,
                   q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
                   offset: Annotated[int, Query(ge=0, le=DB_ID_MAX)] = 0,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> InvestorPage:
    return queries.search_investors(session, request.app.state.pki.keystore, actor, query=q, offset=offset, limit=limit)


@ra_router.get("/investors/{investor_id}", response_model=InvestorOut, summary="An investor")
def show_investor(investor_id: DbId, session: SessionDep, actor: ActorDep) -> InvestorOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR, Role.AUDITOR)
    return queries.investor_view(session, actor, service.visible_investor(session, actor, investor_id))


def _officer_credential(session: Session, actor: Actor, investor_id: int) -> tuple[Investor, Credential]:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    investor = service.visible_investor(session, actor, investor_id)
    current = service.current_credential(session, investor.id or 0)
    if current is None:
        raise Conflict("the investor holds no credential", code="no_credential")
    return investor, credentials.get_credential(session, current.credential_id)


@ra_router.post("/investors/{investor_id}/revoke", response_model=InvestorOut, summary="Revoke the credential")
def revoke(investor_id: DbId, body: RevokeIn, session: SessionDep, pki: PkiDep, actor: ActorDep) -> InvestorOut:
    investor, credential = _officer_credential(session, actor, investor_id)
    credentials.revoke_credential(session, pki, actor=actor, credential=credential, reason=body.reason)
    session.commit()
    return queries.investor_view(session, actor, investor)


@ra_router.post("/investors/{investor_id}/suspend", response_model=InvestorOut, summary="Suspend (certificateHold)")
def suspend(investor_id: DbId, session: SessionDep, pki: PkiDep, actor: ActorDep) -> InvestorOut:
    investor, credential = _officer_credential(session, actor, investor_id)
    credentials.suspend_credential(session, pki, actor=actor, credential=credential)
    session.commit()
    return queries.investor_view(session, actor, investor)


@ra_router.post("/investors/{investor_id}/resume", response_model=InvestorOut, summary="Resume a suspended credential")
def resume(investor_id: DbId, session: SessionDep, pki: PkiDep, actor: ActorDep) -> InvestorOut:
    investor, credential = _officer_credential(session, actor, investor_id)
    credentials.resume_credential(session, pki, actor=actor, credential=credential)
    session.commit()
    return queries.investor_view(session, actor, investor)


@ra_router.post("/investors/{investor_id}/unblock", response_model=InvestorOut, summary="Unblock a locked PIN")
def unblock(investor_id: DbId, session: SessionDep, actor: ActorDep) -> InvestorOut:
    investor, credential = _officer_credential(session, actor, investor_id)
    credentials.unblock_pin(session, actor=actor, credential=credential)
    session.commit()
    return queries.investor_view(session, actor, investor)


@ra_router.post("/investors/{investor_id}/device-replacement", response_model=EnrolmentOut, status_code=201,
                summary="Start a device replacement (approved like an enrolment)")
def device_replacement(investor_id: DbId, body: DeviceReplacementIn, session: SessionDep, actor: ActorDep) -> EnrolmentOut:
    require_role(actor, Role.RA_OFFICER, Role.OPERATOR)
    enrolment = service.request_device_replacement(session, actor=actor, investor_id=investor_id, proofing=body.proofing)
    session.commit()
    return _enrolment_out(enrolment)


# The app: activation and self-service (device proof + PIN, no staff token) ---------------------

@app_router.post("/activation/redeem", response_model=ActivatedOut, status_code=201,
                 summary="Redeem an activation code: device key, PIN, certificate")
def redeem(body: RedeemIn, session: SessionDep, pki: PkiDep) -> ActivatedOut:
    with committing_refusals(session):
        activated = credentials.redeem_activation(
            session, pki, activation_id=body.activation_id, code=body.code,
            device_public_key=body.device_public_key, device_signature=body.device_signature, pin=body.pin,
        )
    session.commit()
    return ActivatedOut(credential_id=activated.credential_id, investor_reference=activated.investor_reference,
                        certificate_chain=_chain(pki, session, activated.certificate_der))


@app_router.post("/app/challenges", response_model=ChallengeOut, status_code=201,
                 summary="A challenge for the enrolled device to sign")
def challenge(body: ChallengeIn, request: Request) -> ChallengeOut:
    with request_sessions(request) as (session, reader):
        credentials.require_credential(reader, body.credential_id)
        issued = devices.issue_challenge(session, body.credential_id)
    return ChallengeOut(challenge_id=issued.id, nonce=base64.b64encode(issued.nonce).decode(), expires_at=issued.expires_at)


def _proven_credential(session: Session, proof: DeviceProof, action: str) -> Credential:
    credential = credentials.get_credential(session, proof.credential_id)
    devices.consume_challenge(session, challenge_id=proof.challenge_id, credential_id=credential.credential_id,
                              action=action, device_key=credential.device_public_key,
                              signature_b64=proof.device_signature)
    if credential.status not in ("active", "suspended"):
        raise Conflict(f"the credential is {credential.status}", code="credential_not_active")
    return credential


def _birth_date(session: Session, credential: Credential) -> dt.date | None:
    investor = session.get(Investor, credential.investor_id)
    return investor.birth_date if investor else None


@app_router.post("/app/pin", status_code=204, summary="Change the PIN (old PIN + device proof)")
def change_pin(body: PinChangeIn, session: SessionDep, pki: PkiDep) -> None:
    with committing_refusals(session):
        credential = _proven_credential(session, body, "pin_change")
        credentials.change_pin(session, pki, credential, old_pin=body.old_pin, new_pin=body.new_pin,
                               birth_date=_birth_date(session, credential))
    session.commit()


@app_router.post("/app/revoke", response_model=CredentialStateOut, summary="Revoke my credential (PIN + device proof)")
def app_revoke(body: AppRevokeIn, session: SessionDep, pki: PkiDep) -> CredentialStateOut:
    with committing_refusals(session):
        credential = _proven_credential(session, body, "revoke")
        credentials.verify_pin(session, pki, credential, body.pin)
    investor = session.get(Investor, credential.investor_id)
    actor = Actor(subject=investor.reference if investor else "?", role=Role.INVESTOR)
    credentials.revoke_credential(session, pki, actor=actor, credential=credential, reason=body.reason)
    session.commit()
    return CredentialStateOut(credential_id=credential.credential_id, status=credential.status)


@app_router.post("/app/renew", response_model=CertificateChainOut, summary="Renew my certificate (PIN + device proof)")
def app_renew(body: AppRenewIn, session: SessionDep, pki: PkiDep) -> CertificateChainOut:
    with committing_refusals(session):
        credential = _proven_credential(session, body, "renew")
        credentials.verify_pin(session, pki, credential, body.pin)
    investor = session.get(Investor, credential.investor_id)
    actor = Actor(subject=investor.reference if investor else "?", role=Role.INVESTOR)
    der = credentials.renew_credential(session, pki, actor=actor, credential=credential)
    session.commit()
    return CertificateChainOut(credential_id=credential.credential_id, certificate_chain=_chain(pki, session, der))
