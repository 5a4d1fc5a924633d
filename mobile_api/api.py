"""The mobile API under ``/mobile/v1``: activation, sign-in, trust material, me, inbox.

Thin handlers: parse, authorise (:data:`mobile_api.web.CallerDep`), call one service
function, shape the response in the negotiated language. The meetings, voting and ballot
endpoints are in :mod:`mobile_api.api_voting` and mounted on the same router.
"""

from __future__ import annotations

import base64
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlmodel import Session

from ca.context import Pki
from core.db import committing_refusals
from core.web import ReadSessionDep, SessionDep, request_sessions
from mobile_api import auth, inbox, me
from mobile_api.api_voting import voting_router
from mobile_api.auth import IssuedTokens
from mobile_api.schemas import (
    ActivationOut,
    BrokerLinkOut,
    CertificateOut,
    ChallengeIn,
    ChallengeOut,
    CredentialStateOut,
    DeviceOut,
    InboxOut,
    LoginIn,
    MeOut,
    NotificationOut,
    PinChangeIn,
    RefreshIn,
    RenewIn,
    RevokeIn,
    SealOut,
    TokensOut,
    TrustOut,
    decode_cursor,
    encode_cursor,
    maybe_moment,
    moment,
)
from mobile_api.web import CallerDep, IssuerDep, LanguageDep, MobileRoute, push_provider
from ra import credentials as ra_credentials
from ra import devices
from ra.models import Credential, Investor
from ra.schemas import RedeemIn

ERRORS = {
    400: {"description": "Malformed request: malformed_json, weak_pin, invalid_cursor, invalid_choice …"},
    401: {"description": "missing_token, invalid_token, token_expired, credential_revoked, device_replaced, "
                         "session_revoked, bad_device_proof, invalid_challenge, wrong_pin …"},
    403: {"description": "forbidden_role (not an investor token), pin_locked, credential_suspended …"},
    404: {"description": "Not yours or does not exist: unknown_meeting, unknown_ballot, unknown_submission …"},
    409: {"description": "State: voting_closed, submission_used, tally_not_final, revocation_too_late …"},
    413: {"description": "body_too_large"},
    422: {"description": "validation_error: the body does not match the schema"},
}

mobile_router = APIRouter(prefix="/mobile/v1", tags=["mobile"], route_class=MobileRoute, responses=ERRORS)
DeviceId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def _chain(pki: Pki, session: Session, certificate_der: bytes) -> list[str]:
    return [_pem(certificate_der), *(_pem(pki.load_ca(session, name).certificate_der) for name in ("issuing", "root"))]


def _tokens(issued: IssuedTokens, language: str) -> dict[str, object]:
    return {"access_token": issued.access_token, "expires_in": issued.expires_in, "refresh_token": issued.refresh_token,
            "refresh_expires_at": moment(issued.refresh_expires_at, language),
            "credential_id": issued.credential_id, "investor_reference": issued.investor_reference}


_NO_STORE = {"Cache-Control": "no-store"}


# Activation and sign-in ---------------------------------------------------------------------

@mobile_router.post("/activation/redeem", response_model=ActivationOut, status_code=201,
                    summary="Redeem the activation code: register the device key, set the PIN, sign in")
def redeem(body: RedeemIn, request: Request, response: Response, session: SessionDep, issuer: IssuerDep,
           language: LanguageDep) -> ActivationOut:
    """The RA's redemption (``ra.credentials.redeem_activation``); the device's signature over
    the activation proves possession of its key, so the app is signed in at once."""
    pki = request.app.state.pki
    with committing_refusals(session):
        activated = ra_credentials.redeem_activation(
            session, pki, activation_id=body.activation_id, code=body.code, device_public_key=body.device_public_key,
            device_signature=body.device_signature, pin=body.pin)
    credential = session.execute(select(Credential).where(Credential.credential_id == activated.credential_id)
                                 ).scalar_one()
    investor = session.get(Investor, credential.investor_id)
    assert investor is not None
    issued = auth.open_session(session, issuer, investor=investor, credential=credential)
    chain = _chain(pki, session, activated.certificate_der)
    session.commit()
    response.headers.update(_NO_STORE)
    return ActivationOut(**_tokens(issued, language), certificate_chain=chain)  # type: ignore[arg-type]


@mobile_router.post("/auth/challenge", response_model=ChallengeOut, status_code=201,
                    summary="A challenge for the enrolled device (sign-in, PIN change, revocation, renewal)")
def challenge(body: ChallengeIn, request: Request, language: LanguageDep) -> ChallengeOut:
    with request_sessions(request) as (session, reader):
        ra_credentials.require_credential(reader, body.credential_id)
        issued = devices.issue_challenge(session, body.credential_id)
    return ChallengeOut(challenge_id=issued.id, nonce=base64.b64encode(issued.nonce).decode(),
                        expires_at=moment(issued.expires_at, language))


@mobile_router.post("/auth/login", response_model=TokensOut, summary="Sign in with the device key (no password)")
def login(body: LoginIn, response: Response, session: SessionDep, issuer: IssuerDep,
          language: LanguageDep) -> TokensOut:
    """The device signs the challenge with action ``mobile_login``; returns a short-lived
    access token and a single-use refresh token."""
    issued = auth.login(session, issuer, credential_id=body.credential_id, challenge_id=body.challenge_id,
                        device_signature=body.device_signature)
    session.commit()
    response.headers.update(_NO_STORE)
    return TokensOut(**_tokens(issued, language))  # type: ignore[arg-type]


@mobile_router.post("/auth/refresh", response_model=TokensOut, summary="Rotate the refresh token")
def refresh(body: RefreshIn, response: Response, session: SessionDep, issuer: IssuerDep,
            language: LanguageDep) -> TokensOut:
    """Each refresh token works once; presenting a used one closes the whole session."""
    with committing_refusals(session):
        issued = auth.rotate(session, issuer, refresh_token=body.refresh_token)
    session.commit()
    response.headers.update(_NO_STORE)
    return TokensOut(**_tokens(issued, language))  # type: ignore[arg-type]


@mobile_router.post("/auth/logout", status_code=204, summary="Sign out: close this session")
def logout(caller: CallerDep, session: SessionDep) -> Response:
    """Revokes the session's refresh tokens; its access tokens are refused from now on."""
    auth.close_session(session, caller)
    session.commit()
    return Response(status_code=204)


@mobile_router.get("/pki", response_model=TrustOut, summary="CA chain and platform seal certificates")
def trust(request: Request, session: ReadSessionDep, language: LanguageDep) -> TrustOut:
    """Public: what receipts and signed tree heads are checked with."""
    root, issuing, seals = me.trust(session, request.app.state.pki)
    return TrustOut(root=_pem(root), issuing=_pem(issuing), seals=[
        SealOut(serial=s.serial_hex, status=s.status, not_before=moment(s.not_before, language),
                not_after=moment(s.not_after, language), pem=_pem(s.der)) for s in seals])


# Me -----------------------------------------------------------------------------------------

def _device_out(device: me.Device, language: str) -> DeviceOut:
    return DeviceOut(device_id=device.device_id, credential_id=device.credential_id,
                     credential_status=device.credential_status, registered_at=moment(device.registered_at, language),
                     current=device.current)


@mobile_router.get("/me", response_model=MeOut, summary="My certificate, brokers and devices")
def show_me(caller: CallerDep, session: ReadSessionDep, language: LanguageDep) -> MeOut:
    profile = me.profile(session, caller)
    credential, certificate = profile.credential, profile.certificate
    return MeOut(
        investor_reference=profile.investor.reference, name=profile.investor.name, id_masked=profile.investor.id_masked,
        certificate=CertificateOut(
            credential_id=credential.credential_id, status=credential.status,
            certificate_serial=credential.certificate_serial,
            certificate_status=certificate.status if certificate else None, key_algorithm=credential.key_algorithm,
            valid_from=maybe_moment(certificate.not_before if certificate else None, language),
            valid_until=maybe_moment(certificate.not_after if certificate else None, language),
            pin_locked=credential.locked_at is not None, pin_tries_left=profile.pin_tries_left),
        brokers=[BrokerLinkOut(broker_code=a.broker_code, broker_name=name, account_number=a.account_number,
                               linked_at=moment(a.linked_at, language)) for a, name in profile.accounts],
        devices=[_device_out(d, language) for d in profile.devices])


@mobile_router.get("/me/devices", response_model=list[DeviceOut], summary="My devices")
def my_devices(caller: CallerDep, session: ReadSessionDep, language: LanguageDep) -> list[DeviceOut]:
    return [_device_out(d, language) for d in me.devices_of(session, caller)]


@mobile_router.get("/me/devices/{device_id}", response_model=DeviceOut, summary="One of my devices")
def my_device(device_id: DeviceId, caller: CallerDep, session: ReadSessionDep, language: LanguageDep) -> DeviceOut:
    return _device_out(me.device(session, caller, device_id), language)


@mobile_router.post("/me/pin", status_code=204, summary="Change my PIN (old PIN + device proof)")
def change_pin(body: PinChangeIn, request: Request, caller: CallerDep, session: SessionDep) -> Response:
    with committing_refusals(session):
        me.change_pin(session, request.app.state.pki, caller, challenge_id=body.challenge_id,
                      device_signature=body.device_signature, old_pin=body.old_pin, new_pin=body.new_pin)
    session.commit()
    return Response(status_code=204)


@mobile_router.post("/me/revoke", response_model=CredentialStateOut,
                    summary="Revoke my certificate (PIN + device proof); signs me out everywhere")
def revoke(body: RevokeIn, request: Request, caller: CallerDep, session: SessionDep) -> CredentialStateOut:
    with committing_refusals(session):
        credential = me.revoke(session, request.app.state.pki, caller, challenge_id=body.challenge_id,
                               device_signature=body.device_signature, pin=body.pin, reason=body.reason,
                               push=push_provider(request))
    session.commit()
    return CredentialStateOut(credential_id=credential.credential_id, status=credential.status,
                              certificate_serial=credential.certificate_serial)


@mobile_router.post("/me/renew", response_model=CredentialStateOut, summary="Renew my certificate (PIN + device proof)")
def renew(body: RenewIn, request: Request, caller: CallerDep, session: SessionDep) -> CredentialStateOut:
    pki = request.app.state.pki
    with committing_refusals(session):
        credential, der = me.renew(session, pki, caller, challenge_id=body.challenge_id,
                                   device_signature=body.device_signature, pin=body.pin, push=push_provider(request))
    chain = _chain(pki, session, der)
    session.commit()
    return CredentialStateOut(credential_id=credential.credential_id, status=credential.status,
                              certificate_serial=credential.certificate_serial, certificate_chain=chain)


# Inbox --------------------------------------------------------------------------------------

@mobile_router.get("/inbox", response_model=InboxOut, summary="What is new since the last poll")
def read_inbox(request: Request, caller: CallerDep, language: LanguageDep,
               since: Annotated[str | None, Query(max_length=32, description="next_cursor of the last poll")] = None,
               limit: Annotated[int, Query(ge=1, le=100)] = 50) -> InboxOut:
    """New meetings, deadline reminders, receipts, published results and certificate
    changes, oldest first after ``since``."""
    after = decode_cursor(since)
    with request_sessions(request) as (session, reader):
        added = inbox.sync(session, reader, investor_id=caller.investor_id, investor_reference=caller.reference,
                           id_hmac=caller.id_hmac, push=push_provider(request))
        entries, more = inbox.page(session if added else reader, caller.investor_id, since=after, limit=limit)
    items = []
    for entry in entries:
        title, body = inbox.render(entry, language)
        items.append(NotificationOut(seq=entry.seq, kind=entry.kind, variant=entry.variant, title=title, body=body,
                                     meeting=entry.meeting, data=entry.data,
                                     occurred_at=moment(entry.occurred_at, language),
                                     created_at=moment(entry.created_at, language)))
    return InboxOut(items=items, next_cursor=encode_cursor(entries[-1].seq if entries else after), has_more=more)


mobile_router.include_router(voting_router)
