"""Request and response models of the CA endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class SubjectIn(BaseModel):
    """Subject attributes of a requested certificate."""

    model_config = ConfigDict(extra="forbid")

    common_name: str = Field(min_length=1, max_length=64)
    serial_number: str | None = Field(default=None, min_length=1, max_length=64)
    organization: str | None = Field(default=None, min_length=1, max_length=64)
    organizational_unit: str | None = Field(default=None, min_length=1, max_length=64)
    country: str | None = Field(default=None, min_length=2, max_length=2)


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
    invalidity_date: dt.datetime | None = None


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
