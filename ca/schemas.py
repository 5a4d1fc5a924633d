"""Request and response models of the CA endpoints."""

from __future__ import annotations

import datetime as dt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.validation import Text64

# X.520 upper bounds; printable: the PrintableString alphabet (serialNumber, countryName).
_PRINTABLE = r"^[A-Za-z0-9 '()+,\-./:=?]+$"


DirectoryString = Text64


class SubjectIn(BaseModel):
    """Subject attributes of a requested certificate (the profile's name rules)."""

    model_config = ConfigDict(extra="forbid")

    common_name: DirectoryString
    serial_number: str | None = Field(default=None, min_length=1, max_length=64, pattern=_PRINTABLE)
    organization: DirectoryString | None = None
    organizational_unit: DirectoryString | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class IssueRequest(BaseModel):
    """Issue a certificate: from a CSR (proof of possession checked), or a public key."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(default="investor_signing", max_length=64)
    csr_pem: str | None = Field(default=None, max_length=65536)
    public_key_pem: str | None = Field(default=None, max_length=65536)
    subject: SubjectIn | None = None


class RevokeRequest(BaseModel):
    """Revoke or suspend a certificate (RFC 5280 reason names, e.g. ``keyCompromise``)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="unspecified", max_length=32)
    invalidity_date: dt.datetime | None = Field(
        default=None, description="when the key is known or suspected to have been compromised")

    @field_validator("invalidity_date")
    @classmethod
    def _plausible_past(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("needs a time zone")
        try:
            value = value.astimezone(dt.timezone.utc)
        except OverflowError as exc:
            raise ValueError("is out of range") from exc
        if not dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc) <= value <= dt.datetime.now(dt.timezone.utc):
            raise ValueError("must lie between 2000-01-01 and now")
        return value


class CertificateOut(BaseModel):
    """A certificate the platform issued, with its current status."""

    serial: str
    ca: str
    profile: str
    subject: str
    status: str = Field(description="good, revoked or on_hold")
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    invalidity_date: dt.datetime | None = None
    certificate_pem: str
