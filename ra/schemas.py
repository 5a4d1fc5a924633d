"""Request and response models of the RA endpoints."""

from __future__ import annotations

import datetime as dt

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.validation import Description200, PastDate, Text32, Text200
from ra.identity import IdentityKind


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerIn(_Strict):
    code: str = Field(pattern=r"^[A-Z0-9]{2,16}$", description="the broker's market code")
    name: Text200
    dual_control: bool = False


class BrokerOut(BaseModel):
    code: str
    name: str
    dual_control: bool
    active: bool


class EnrolmentIn(_Strict):
    """An identity-proofed investor, as the RA officer submits them."""

    broker_code: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,16}$",
                                    description="operators only; officers act for their broker")
    id_kind: IdentityKind = IdentityKind.NATIONAL_ID
    id_number: str = Field(min_length=8, max_length=10, pattern=r"^[A-Za-z0-9 ]+$",
                           description="national ID or unified business number")
    name: Text200
    birth_date: PastDate | None = None
    contact_channel: Description200 = Field(description="where the activation code goes")
    accounts: list[Text32] = Field(min_length=1, max_length=20, description="account numbers at this broker")
    proofing: Description200 = Field(description="how identity was proofed")
    key_algorithm: Literal["EC_P256", "RSA_2048", "RSA_3072"] = Field(
        default="EC_P256",
        description="the key the HSM generates for a new credential (RSA for order apps that need it)")


class EnrolmentOut(BaseModel):
    enrolment_id: int
    investor_id: int | None = Field(description="known once approved")
    broker_code: str
    purpose: str
    key_algorithm: str
    status: str = Field(description="pending, approved, linked (no code needed), activated, rejected")
    submitted_by: str
    approved_by: str | None = None


class ApprovalOut(EnrolmentOut):
    activation_code_sent: bool = Field(description="a code went to the investor's contact channel")


class RejectIn(_Strict):
    reason: Description200


class DeviceReplacementIn(_Strict):
    proofing: Description200


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


END_ENTITY_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn")


class RevokeIn(_Strict):
    reason: str = Field(default="unspecified", pattern="^(" + "|".join(END_ENTITY_REASONS) + ")$",
                        description="RFC 5280 reason name (end-entity reasons)")


class RedeemIn(_Strict):
    """What the app sends to redeem its activation code."""

    activation_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    code: str = Field(min_length=1, max_length=64, repr=False)
    device_public_key: str = Field(min_length=1, max_length=4096, description="P-256 SPKI, base64 DER or PEM")
    device_signature: str = Field(min_length=1, max_length=512,
                                  description="ECDSA-SHA256 (base64 DER) over the activation message")
    pin: str = Field(min_length=1, max_length=32, repr=False)


class ActivatedOut(BaseModel):
    credential_id: str
    investor_reference: str
    certificate_chain: list[str] = Field(description="PEM, end-entity first, then issuing and root CA")


_ID = r"^[0-9a-f]{1,64}$"


class ChallengeIn(_Strict):
    credential_id: str = Field(pattern=_ID)


class ChallengeOut(BaseModel):
    challenge_id: str
    nonce: str = Field(description="base64")
    expires_at: dt.datetime


class DeviceProof(_Strict):
    credential_id: str = Field(pattern=_ID)
    challenge_id: str = Field(pattern=_ID)
    device_signature: str = Field(min_length=1, max_length=512)


class PinChangeIn(DeviceProof):
    old_pin: str = Field(min_length=1, max_length=32, repr=False)
    new_pin: str = Field(min_length=1, max_length=32, repr=False)


class AppRevokeIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32, repr=False)
    reason: str = Field(default="unspecified", pattern="^(" + "|".join(END_ENTITY_REASONS) + ")$")


class AppRenewIn(DeviceProof):
    pin: str = Field(min_length=1, max_length=32, repr=False)


class CredentialStateOut(BaseModel):
    credential_id: str
    status: str


class CertificateChainOut(BaseModel):
    credential_id: str
    certificate_chain: list[str]
