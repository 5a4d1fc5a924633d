"""Request and response models of the mobile API (the contract the app is built against).

Times are aware UTC (``utc``) with the Asia/Taipei reading beside them (``taipei``), in the
negotiated language. Share and vote figures are decimal strings: they may exceed 2**53.
Lists are paginated with ``limit`` and an opaque ``cursor`` (``next_cursor`` is null on the
last page).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import BadRequest
from mobile_api import i18n
from ra.schemas import END_ENTITY_REASONS
from voting.schemas import ReceiptOut as ReceiptOut  # the voting service's sealed receipt, as is

HEX_ID = r"^[0-9a-f]{1,64}$"
PUBLIC_ID = r"^[0-9a-f]{32}$"
SHA256_HEX = r"^[0-9a-f]{64}$"
HOLDER_NO = r"^[!-~]{1,32}$"
MeetingStatus = Literal["not_voted", "voted", "revoked", "overridden"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Moment(BaseModel):
    """An instant: aware UTC and how it reads in Taipei."""

    utc: dt.datetime
    taipei: str = Field(description="Asia/Taipei wall-clock time in the response's language")


def moment(value: dt.datetime, language: str) -> Moment:
    """``value`` as a :class:`Moment` in ``language``."""
    return Moment(utc=value.astimezone(dt.timezone.utc), taipei=i18n.taipei_display(value, language))


def maybe_moment(value: dt.datetime | None, language: str) -> Moment | None:
    """:func:`moment`, or None."""
    return None if value is None else moment(value, language)


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode()


def encode_cursor(offset: int) -> str:
    """The opaque cursor of a list position."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The list position a cursor names (0 without one); 400 ``invalid_cursor``."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "o" or not value.isdigit() or len(value) > 9:
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("the cursor is not valid", code="invalid_cursor") from exc


# Sign-in --------------------------------------------------------------------------------------

class ChallengeIn(_Strict):
    credential_id: str = Field(pattern=HEX_ID)


class ChallengeOut(BaseModel):
    challenge_id: str
    nonce: str = Field(description="base64; the device signs cloudseal/app\\n{challenge_id}\\n{action}\\n"
                                   "{credential_id}\\n{nonce} (ECDSA P-256, SHA-256)")
    expires_at: Moment


class LoginIn(_Strict):
    credential_id: str = Field(pattern=HEX_ID)
    challenge_id: str = Field(pattern=HEX_ID)
    device_signature: str = Field(min_length=1, max_length=512, description="over the challenge, action mobile_login")


class RefreshIn(_Strict):
    refresh_token: str = Field(min_length=1, max_length=128, repr=False)


class TokensOut(BaseModel):
    access_token: str = Field(description="JWT (ES256) for Authorization: Bearer; short-lived")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str = Field(description="single use; presenting it twice closes the session")
    refresh_expires_at: Moment
    credential_id: str
    investor_reference: str


class ActivationOut(TokensOut):
    certificate_chain: list[str] = Field(description="PEM, the investor's certificate first, then issuing and root CA")


class SealOut(BaseModel):
    serial: str
    status: str
    not_before: Moment
    not_after: Moment
    pem: str


class TrustOut(BaseModel):
    """What the app checks receipts and tree heads with."""

    root: str = Field(description="PEM; an app ships (pins) this certificate")
    issuing: str = Field(description="PEM")
    seals: list[SealOut] = Field(description="every platform seal certificate, oldest first")


# Me -------------------------------------------------------------------------------------------

class CertificateOut(BaseModel):
    credential_id: str
    status: str = Field(description="the credential: active, suspended, revoked, superseded")
    certificate_serial: str | None
    certificate_status: str | None = Field(description="good, on_hold or revoked")
    key_algorithm: str
    valid_from: Moment | None
    valid_until: Moment | None
    pin_locked: bool
    pin_tries_left: int


class BrokerLinkOut(BaseModel):
    broker_code: str
    broker_name: str
    account_number: str
    linked_at: Moment


class DeviceOut(BaseModel):
    device_id: str = Field(description="SHA-256 (hex) of the device's public key")
    credential_id: str
    credential_status: str
    registered_at: Moment
    current: bool = Field(description="the device this session runs on")


class MeOut(BaseModel):
    investor_reference: str
    name: str
    id_masked: str
    certificate: CertificateOut
    brokers: list[BrokerLinkOut]
    devices: list[DeviceOut]


class DeviceProofIn(_Strict):
    challenge_id: str = Field(pattern=HEX_ID)
    device_signature: str = Field(min_length=1, max_length=512)


class PinChangeIn(DeviceProofIn):
    old_pin: str = Field(min_length=1, max_length=32, repr=False)
    new_pin: str = Field(min_length=1, max_length=32, repr=False)


class RevokeIn(DeviceProofIn):
    pin: str = Field(min_length=1, max_length=32, repr=False)
    reason: str = Field(default="unspecified", pattern="^(" + "|".join(END_ENTITY_REASONS) + ")$")


class RenewIn(DeviceProofIn):
    pin: str = Field(min_length=1, max_length=32, repr=False)


class CredentialStateOut(BaseModel):
    credential_id: str
    status: str
    certificate_serial: str | None
    certificate_chain: list[str] | None = None


# Meetings -------------------------------------------------------------------------------------

class HoldingOut(BaseModel):
    holder_no: str
    shares: str
    non_voting_shares: str
    votable_shares: str = Field(description="shares − shares without voting rights")
    status: MeetingStatus
    cumulative_votes: dict[str, str] = Field(default_factory=dict,
                                             description="per election: votable shares × seats (meeting detail)")


class MeetingSummaryOut(BaseModel):
    public_id: str
    issuer_code: str
    issuer_name: str
    title: str
    meeting_date: dt.date
    meeting_status: str = Field(description="published or frozen")
    opens_at: Moment
    closes_at: Moment = Field(description="exclusive: the last accepted second is last_moment")
    last_moment: str
    voting_open: bool
    status: MeetingStatus = Field(description="mine; with several holder numbers, the one still most to do")
    votable_shares: str
    holdings: list[HoldingOut]


class MeetingPage(BaseModel):
    items: list[MeetingSummaryOut]
    next_cursor: str | None


class CandidateOut(BaseModel):
    key: str
    name: str


class AgendaItemOut(BaseModel):
    key: str
    kind: str
    title: str
    article: str | None
    seats: int
    candidates: list[CandidateOut]
    electronically_votable: bool
    recused_holders: list[str] = Field(description="my holder numbers out of this item's votes (Art. 178)")
    cumulative_votes_available: str | None = Field(description="elections, with one holder number: shares × seats")


class MeetingDetailOut(MeetingSummaryOut):
    agenda: list[AgendaItemOut]


class ResultOut(BaseModel):
    meeting: str
    title: str
    frozen_at: Moment
    result: dict[str, Any] = Field(description="the frozen tally; share figures as strings")


# Voting ---------------------------------------------------------------------------------------

class BallotPrepareIn(_Strict):
    holder_no: str | None = Field(default=None, pattern=HOLDER_NO, description="needed with several holder numbers")
    choices: dict[str, Any] = Field(max_length=100, description='{"1": "CFOR", "3": {"allocations": {"C1": 500}}}')


class RevocationPrepareIn(_Strict):
    holder_no: str | None = Field(default=None, pattern=HOLDER_NO)


class PreparedOut(BaseModel):
    submission_id: str
    kind: Literal["ballot", "revocation"]
    meeting: str
    holder_no: str
    payload: str = Field(description="base64 of the canonical JSON (RFC 8785) to be signed")
    payload_sha256: str = Field(description="hex")
    digest_algorithm: Literal["sha256"] = "sha256"
    challenge: ChallengeOut = Field(description="sign it with action authorize:{sha256 hex of b'sha256' + digest}")
    expires_at: Moment


class SubmitIn(_Strict):
    pin: str = Field(min_length=1, max_length=32, repr=False)
    device_signature: str = Field(min_length=1, max_length=512)


class SubmittedOut(BaseModel):
    submission_id: str
    kind: Literal["ballot", "revocation"]
    meeting: str
    holder_no: str
    payload_sha256: str
    status: str
    cms: str = Field(description="base64 DER: my detached CAdES-BES signature over the payload")
    revoked_ballots: int | None
    receipt: ReceiptOut


class BallotOut(BaseModel):
    meeting: str
    meeting_title: str
    holder_no: str
    ballot_sha256: str
    received_at: Moment
    status: str = Field(description="counted, superseded, revoked or overridden_by_proxy")
    leaf_index: int
    voided_items: dict[str, str]
    receipt: ReceiptOut | None = Field(description="when the ballot was sent through the app")


class BallotPage(BaseModel):
    items: list[BallotOut]
    next_cursor: str | None


class SubmissionOut(BaseModel):
    submission_id: str
    kind: Literal["ballot", "revocation"]
    meeting: str
    meeting_title: str
    holder_no: str
    payload_sha256: str
    submitted_at: Moment
    receipt: ReceiptOut


class SubmissionPage(BaseModel):
    items: list[SubmissionOut]
    next_cursor: str | None


class TreeHeadOut(BaseModel):
    meeting: str
    tree_size: int
    root_hash: str = Field(description="base64")
    issued_at: str = Field(description="as sealed: UTC with microseconds")
    signature: str = Field(description="base64 DER ECDSA by a platform seal over SHA-256 of the statement")


class BallotProofOut(BaseModel):
    status: str = Field(description="final: counted, superseded, revoked or overridden_by_proxy")
    counted: bool
    leaf_index: int
    tree_size: int
    inclusion_proof: list[str] = Field(description="base64 hashes, RFC 9162 §2.1.3")
    tree_head: TreeHeadOut
    entry: dict[str, str] = Field(description="the log entry; its leaf is SHA-256(0x00 || RFC 8785 JSON)")
    voided_items: dict[str, str]


# Inbox ----------------------------------------------------------------------------------------

class NotificationOut(BaseModel):
    seq: int
    kind: str = Field(description="new_meeting, deadline, receipt, result or certificate")
    variant: str
    title: str
    body: str
    meeting: str | None
    data: dict[str, Any]
    occurred_at: Moment
    created_at: Moment


class InboxOut(BaseModel):
    items: list[NotificationOut]
    next_cursor: str = Field(description="poll again with since=this")
    has_more: bool
