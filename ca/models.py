"""Tables of the certificate authority."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class CertificateAuthority(SQLModel, table=True):
    """A CA of the platform: ``root`` (self-signed) or ``issuing`` (signs investors)."""

    __tablename__ = "ca_authority"

    name: str = Field(primary_key=True, max_length=32)
    parent_name: str | None = Field(default=None, foreign_key="ca_authority.name", max_length=32)
    key_label: str = Field(max_length=128, unique=True)
    key_owner: str = Field(max_length=128)
    certificate_der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    subject: str = Field(max_length=500)
    next_crl_number: int = Field(default=1, sa_type=BigInteger)
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class IssuedCertificate(SQLModel, table=True):
    """Every certificate a CA of the platform has issued, with its revocation state."""

    __tablename__ = "ca_certificate"

    id: int | None = Field(default=None, primary_key=True)
    serial_hex: str = Field(max_length=42, unique=True, description="lower-case hex")
    ca_name: str = Field(foreign_key="ca_authority.name", max_length=32, index=True)
    profile: str = Field(max_length=64, index=True)
    subject: str = Field(max_length=1000)
    key_label: str | None = Field(default=None, max_length=128, index=True)
    fingerprint_sha256: str = Field(max_length=64, unique=True)
    not_before: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    not_after: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="good", max_length=16, index=True)
    revoked_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    revocation_reason: str | None = Field(default=None, max_length=32)
    invalidity_date: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    issued_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


@dataclass(frozen=True)
class CertificateRecord:
    """A just-issued certificate as plain data: what issuance returns (cheaper than an ORM
    instance on the hot path). Same field names as :class:`IssuedCertificate`."""

    id: int
    serial_hex: str
    ca_name: str
    profile: str
    subject: str
    key_label: str | None
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes
    status: str
    issued_at: dt.datetime
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    invalidity_date: dt.datetime | None = None


CertificateRow = IssuedCertificate | CertificateRecord


class CrlRecord(SQLModel, table=True):
    """A signed CRL; the newest per CA is the one served."""

    __tablename__ = "ca_crl"
    __table_args__ = (UniqueConstraint("ca_name", "crl_number", name="uq_ca_crl_number"),)

    id: int | None = Field(default=None, primary_key=True)
    ca_name: str = Field(foreign_key="ca_authority.name", max_length=32, index=True)
    crl_number: int = Field(sa_type=BigInteger)
    this_update: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    next_update: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class OcspResponseRecord(SQLModel, table=True):
    """A pre-generated, signed OCSP response for one certificate and CertID hash."""

    __tablename__ = "ca_ocsp_response"
    __table_args__ = (
        UniqueConstraint("ca_name", "serial_hex", "hash_algorithm", name="uq_ca_ocsp_response"),
        # A ballot's status evidence is found by the signer's serial alone (serials are unique
        # across the platform's CAs): without this index every lookup read the whole table.
        Index("ix_ca_ocsp_response_serial_hex", "serial_hex"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ca_name: str = Field(foreign_key="ca_authority.name", max_length=32)
    serial_hex: str = Field(max_length=42)
    hash_algorithm: str = Field(max_length=16)
    this_update: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    next_update: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    der: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
