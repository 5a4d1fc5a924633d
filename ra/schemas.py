"""Request and response models of the RA endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from ra.identity import IdentityKind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerIn(_Strict):
    code: str = Field(pattern=r"^[A-Z0-9]{2,16}$", description="the broker's market code")
    name: str = Field(min_length=1, max_length=200)
    dual_control: bool = False


class BrokerOut(BaseModel):
    code: str
    name: str
    dual_control: bool
    active: bool


class EnrolmentIn(_Strict):
    """An identity-proofed investor, as the RA officer submits them."""

    broker_code: str | None = Field(default=None, description="operators only; officers act for their broker")
    id_kind: IdentityKind = IdentityKind.NATIONAL_ID
    id_number: str = Field(min_length=8, max_length=10, description="national ID or unified business number")
    name: str = Field(min_length=1, max_length=200)
    birth_date: dt.date | None = None
    contact_channel: str = Field(min_length=3, max_length=200, description="where the activation code goes")
    accounts: list[str] = Field(min_length=1, max_length=20, description="account numbers at this broker")
    proofing: str = Field(min_length=3, max_length=200, description="how identity was proofed")


class EnrolmentOut(BaseModel):
    enrolment_id: int
    investor_id: int
    broker_code: str
    purpose: str
    status: str = Field(description="pending, approved, linked (no code needed), activated")
    submitted_by: str
    approved_by: str | None = None


class ApprovalOut(EnrolmentOut):
    activation_code_sent: bool = Field(description="a code went to the investor's contact channel")


class DeviceReplacementIn(_Strict):
    proofing: str = Field(min_length=3, max_length=200)


class AccountLinkOut(BaseModel):
    broker_code: str
    account_number: str
    linked_at: dt.datetime


class CredentialOut(BaseModel):
    credential_id: str
    status: str
    certificate_serial: str | None
    pin_locked: bool
    device_registered_at: dt.datetime


class InvestorOut(BaseModel):
    """An investor as one broker sees them: only that broker's own account links."""

    investor_id: int
    reference: str
    id_masked: str
    id_kind: str
    name: str
    accounts: list[AccountLinkOut]
    credential: CredentialOut | None


class InvestorPage(BaseModel):
    items: list[InvestorOut]
    total: int
    offset: int
    limit: int


class RevokeIn(_Strict):
    reason: str = Field(default="unspecified", max_length=32, description="RFC 5280 reason name")


class RedeemIn(_Strict):
    """What the app sends to redeem its activation code."""

    activation_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=64)
    device_public_key: str = Field(min_length=1, max_length=4096, description="P-256 SPKI, base64 DER or PEM")
    device_signature: str = Field(min_length=1, max_length=512,
                                  description="ECDSA-SHA256 (base64 DER) over the activation message")
    pin: str = Field(min_length=1, max_length=32)


class ActivatedOut(BaseModel):
    credential_id: str
    investor_reference: str
    certificate_chain: list[str] = Field(description="PEM, end-entity first, then issuing and root CA")


class ChallengeIn(_Strict):
    credential_id: str = Field(min_length=1, max_length=64)


class ChallengeOut(BaseModel):
    challenge_id: str
    nonce: str = Field(description="base64")
    expires_at: dt.datetime


class DeviceProof(_Strict):
    credential_id: str = Field(min_length=1, max_length=64)
    challenge_id: str = Field(min_length=1, max_length=64)
    device_signature: str = Field(min_length=1, max_length=512)


class PinChangeIn(DeviceProof):
    old_pin: str = Field(min_length=1, max_length=32)
    new_pin: str = Field(min_length=1, max_length=32)


class AppRevokeIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="unspecified", max_length=32)


class AppRenewIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32)


class CredentialStateOut(BaseModel):
    credential_id: str
    status: str


class CertificateChainOut(BaseModel):
    credential_id: str
    certificate_chain: list[str]
