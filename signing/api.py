"""HTTP endpoints of the signing service outside the CSC API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from core.db import committing_refusals
from core.web import SessionDep
from ra import credentials as ra_credentials
from ra import devices
from ra.models import Investor
from ra.schemas import DeviceProof
from signing import totp

signing_router = APIRouter(prefix="/signing", tags=["signing"])


class TotpEnrolIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32, repr=False)


class TotpEnrolOut(BaseModel):
    otpauth_uri: str = Field(description="for the authenticator app (QR code); shown only this once")


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
