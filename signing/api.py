"""HTTP endpoints of the signing service outside the CSC API."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from core.db import committing_refusals
from core.errors import BadRequest
from core.web import SessionDep, get_actor, request_sessions
from ra import credentials as ra_credentials
from ra import devices
from ra.models import Investor
from ra.schemas import DeviceProof
from signing import service, totp

signing_router = APIRouter(prefix="/signing", tags=["signing"])


class TotpEnrolIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32, repr=False)


class TotpEnrolOut(BaseModel):
    otpauth_uri: str = Field(description="for the authenticator app (QR code); shown only this once")


class CmsIn(BaseModel):
    """Authorise and sign a document digest in one call (the order or ballot app's way)."""

    model_config = ConfigDict(extra="forbid")

    credential_id: str = Field(pattern=r"^[0-9a-f]{1,64}$")
    digest: str = Field(min_length=1, max_length=128, description="base64 of the document's digest")
    digest_algorithm: str = Field(default="sha256", pattern="^(sha256|sha384|sha512)$")
    pin: str = Field(min_length=1, max_length=32, repr=False)
    challenge_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{1,64}$")
    device_signature: str | None = Field(default=None, max_length=512,
                                         description="over the challenge and [digest] (action authorize:…)")
    otp: str | None = Field(default=None, max_length=16, repr=False)
    purpose: str = Field(default="order", pattern="^(order|ballot|document)$")


class CmsOut(BaseModel):
    cms: str = Field(description="base64 DER of a detached CAdES-BES SignedData, with the chain")


@signing_router.post("/cms", response_model=CmsOut, summary="Authorise and sign: a detached CAdES-BES CMS")
def sign_cms(body: CmsIn, request: Request) -> CmsOut:
    try:
        digest = base64.b64decode(body.digest, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("digest must be base64", code="invalid_hashes") from exc
    client = _client(request)
    with request_sessions(request) as (session, reader), committing_refusals(session):
        der = service.sign_cms(
            session, request.app.state.pki, credential_id=body.credential_id, pin=body.pin, digest=digest,
            hash_algorithm=body.digest_algorithm, client=client, purpose=body.purpose,
            challenge_id=body.challenge_id, device_signature=body.device_signature, otp=body.otp, reader=reader)
    return CmsOut(cms=base64.b64encode(der).decode())


def _client(request: Request) -> str:
    """Who asked: a staff or broker client token names itself; otherwise the investor's app."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return get_actor(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:])).label
    return "app"


@signing_router.post("/totp", response_model=TotpEnrolOut, status_code=201,
                     summary="Enrol an authenticator for CSC clients (PIN + device proof)")
def enrol_totp(body: TotpEnrolIn, request: Request, session: SessionDep) -> TotpEnrolOut:
    pki = request.app.state.pki
    with committing_refusals(session):
        credential = ra_credentials.get_credential(session, body.credential_id)
        devices.consume_challenge(session, challenge_id=body.challenge_id, credential_id=credential.credential_id,
                                  action="totp_enrol", device_key=credential.device_public_key,
                                  signature_b64=body.device_signature)
        ra_credentials.verify_pin(session, pki, credential, body.pin)
    investor = session.get(Investor, credential.investor_id)
    uri = totp.enrol(session, pki.keystore, credential_id=credential.credential_id,
                     account_name=investor.reference if investor else credential.credential_id)
    session.commit()
    return TotpEnrolOut(otpauth_uri=uri)
