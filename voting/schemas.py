"""Request and response models of the voting API."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.validation import Text32, Text200, clean

Text500 = clean(500)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssuerIn(_Strict):
    code: str = Field(pattern=r"^[0-9A-Za-z]{2,16}$", description="company code, e.g. 2330")
    name: Text200


class IssuerOut(BaseModel):
    code: str
    name: str


class CandidateModel(_Strict):
    key: str = Field(pattern=r"^[0-9A-Za-z._-]{1,16}$")
    name: Text200


class AgendaItemModel(_Strict):
    key: str = Field(pattern=r"^[0-9A-Za-z._-]{1,16}$", description="the id ballots use")
    kind: Literal["acknowledgement", "ordinary", "special", "election", "extempore", "amendment"]
    title: Text500
    article: Text32 | None = None
    seats: int = Field(default=0, ge=0, le=100)
    candidates: list[CandidateModel] = Field(default_factory=list, max_length=200)


class MeetingIn(_Strict):
    issuer_code: str = Field(pattern=r"^[0-9A-Z]{2,16}$")
    title: Text200
    meeting_date: dt.date
    book_closure_date: dt.date
    notice_published_on: dt.date
    public_company: bool = True
    thresholds: dict[str, str] | None = Field(
        default=None, description="stricter thresholds of the articles, e.g. {\"special_quorum\": \"3/4\"}")
    items: list[AgendaItemModel] = Field(min_length=1, max_length=100)


class ItemsIn(_Strict):
    items: list[AgendaItemModel] = Field(min_length=1, max_length=20)


class AgendaItemOut(BaseModel):
    key: str
    kind: str
    title: str
    article: str | None
    seats: int
    candidates: list[dict[str, str]]


class MeetingOut(BaseModel):
    id: int
    public_id: str = Field(description="named in every ballot")
    issuer_code: str
    title: str
    meeting_date: dt.date
    book_closure_date: dt.date
    notice_published_on: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime = Field(description="exclusive")
    last_moment: str = Field(description="the deadline as people read it, Asia/Taipei")
    public_company: bool
    status: str
    register_holders: int
    agenda: list[AgendaItemOut] = Field(default_factory=list)


class RegisterOut(BaseModel):
    """Share counts are decimal strings: they can exceed what JSON numbers carry exactly."""

    holders: int
    total_shares: str
    voting_shares: str
    non_voting_shares: str
    sha256: str
    unchanged: bool


class ProxyIn(_Strict):
    holder_no: Text32
    proxy_name: Text200


class AttendanceIn(_Strict):
    holder_no: Text32
    mode: Literal["in_person", "proxy"]
    choices: dict[str, Any] = Field(default_factory=dict, max_length=100)


class RecusalIn(_Strict):
    item_key: str = Field(pattern=r"^[0-9A-Za-z._-]{1,16}$")
    holder_no: Text32
    reason: Text200


class ConfirmationOut(BaseModel):
    status: str = Field(description="counted, superseded, revoked or overridden_by_proxy")
    holder_no: str
    received_at: dt.datetime
    leaf_index: int
    tree_size: int
    inclusion_proof: list[str]
    root_hash: str
    voided_items: dict[str, str] = Field(description="items void on this ballot, e.g. an over-allocated election")


class SignedSubmission(_Strict):
    """A ballot or revocation: canonical JSON bytes and their detached CMS, both base64."""

    payload: str = Field(min_length=1, max_length=90_000, description="base64 of the canonical JSON")
    cms: str = Field(min_length=1, max_length=45_000, description="base64 DER of the detached CAdES-BES CMS")


class ReceiptOut(BaseModel):
    receipt: dict[str, Any] = Field(description="the sealed statement (RFC 8785 JSON is what was signed)")
    signature: str = Field(description="base64 DER ECDSA by the platform seal over SHA-256 of the statement")
    seal_serial: str
    status: str


class RevocationOut(BaseModel):
    revoked_ballots: int
    receipt: dict[str, Any] = Field(description="the sealed statement: the revoked ballots, the log leaf, the tree "
                                                "head (RFC 8785 JSON is what was signed)")
    signature: str = Field(description="base64 DER ECDSA by the platform seal over SHA-256 of the statement")
    seal_serial: str


class TreeHeadOut(BaseModel):
    meeting: str
    tree_size: int
    root_hash: str
    issued_at: dt.datetime
    signature: str


class ProofOut(BaseModel):
    leaf_index: int
    tree_size: int
    path: list[str] = Field(description="base64 hashes, RFC 9162 inclusion proof")


class ConsistencyOut(BaseModel):
    old_size: int
    new_size: int
    path: list[str]
