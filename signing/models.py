"""Tables of the signing service: signature authorisations (SADs) and the signature log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class SignatureAuthorization(SQLModel, table=True):
    """A Signature Activation Data (CSC ``SAD``): single use, bound to one credential and the
    exact hashes it may sign, valid a few minutes. Only its SHA-256 is stored."""

    __tablename__ = "sig_authorization"

    id: int | None = Field(default=None, primary_key=True)
    sad_hash: str = Field(max_length=64, unique=True)
    credential_id: str = Field(max_length=64, index=True)
    hash_algorithm: str = Field(max_length=16)
    hashes: str = Field(sa_column=Column(Text, nullable=False), description="JSON list of hex digests")
    num_signatures: int
    remaining: int
    client: str = Field(max_length=200)
    purpose: str = Field(max_length=32)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SignatureRecord(SQLModel, table=True):
    """Every signature the platform's HSM made: the authoritative record of *when* a
    credential signed *what* (verification takes the signing time from here)."""

    __tablename__ = "sig_log"

    id: int | None = Field(default=None, primary_key=True)
    credential_id: str = Field(max_length=64, index=True)
    certificate_serial: str = Field(max_length=42, index=True)
    digest_hex: str = Field(max_length=128, index=True)
    hash_algorithm: str = Field(max_length=16)
    sign_algorithm: str = Field(max_length=64, description="OID")
    client: str = Field(max_length=200)
    purpose: str = Field(max_length=32)
    signed_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class TotpEnrolment(SQLModel, table=True):
    """A credential's authenticator: the salt the secret is derived from, the last used step."""

    __tablename__ = "sig_totp"

    credential_id: str = Field(primary_key=True, max_length=64)
    salt: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    last_step: int = 0
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class VerificationEvidence(SQLModel, table=True):
    """One verification a broker asked for (``POST /signing/verify``): the document, the
    signature, the verdict and when and by whom it was asked. The broker's own record for
    dispute handling; a broker sees only its own rows."""

    __tablename__ = "sig_verification"

    id: int | None = Field(default=None, primary_key=True)
    broker_code: str | None = Field(default=None, max_length=32, index=True,
                                    description="the caller's tenant; None for an operator")
    document_digest: str | None = Field(default=None, max_length=128, index=True, description="hex")
    cms_sha256: str = Field(max_length=64)
    signer_serial: str | None = Field(default=None, max_length=42)
    signer_reference: str | None = Field(default=None, max_length=64)
    valid: bool
    reason: str | None = Field(default=None, max_length=32)
    signing_time: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    signing_time_source: str = Field(max_length=16)
    checked_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    checked_by: str = Field(max_length=200)
