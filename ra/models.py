"""Tables of the registration authority: brokers, investors, enrolments, credentials."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime


class Broker(SQLModel, table=True):
    """A brokerage: a tenant of the platform and the RA for its own customers."""

    __tablename__ = "ra_broker"

    code: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=200)
    dual_control: bool = Field(default=False, description="approval by a second officer")
    active: bool = True
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Investor(SQLModel, table=True):
    """One person or company, once across all brokers.

    The identity number is stored only as an HMAC under an HSM-held key (``id_hmac``) and
    as a masked display form; the database alone allows no look-up or guessing offline.
    """

    __tablename__ = "ra_investor"

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=32, unique=True, description="INV-… shown on certificates")
    id_kind: str = Field(max_length=20)
    id_hmac: str = Field(max_length=64, unique=True)
    id_masked: str = Field(max_length=16)
    name: str = Field(max_length=200)
    birth_date: dt.date | None = None
    contact_channel: str = Field(max_length=200, description="e.g. sms:+8869…, email:…")
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class BrokerAccount(SQLModel, table=True):
    """An investor's account at a broker: what links an investor to a tenant."""

    __tablename__ = "ra_broker_account"
    __table_args__ = (UniqueConstraint("broker_code", "account_number", name="uq_ra_account"),)

    id: int | None = Field(default=None, primary_key=True)
    investor_id: int = Field(foreign_key="ra_investor.id", index=True)
    broker_code: str = Field(foreign_key="ra_broker.code", max_length=16, index=True)
    account_number: str = Field(max_length=32)
    linked_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Enrolment(SQLModel, table=True):
    """An RA officer's identity-proofed request to give an investor a credential."""

    __tablename__ = "ra_enrolment"

    id: int | None = Field(default=None, primary_key=True)
    investor_id: int | None = Field(default=None, foreign_key="ra_investor.id", index=True,
                                    description="set on approval (device replacement: at once)")
    broker_code: str = Field(foreign_key="ra_broker.code", max_length=16, index=True)
    purpose: str = Field(default="enrolment", max_length=32, description="enrolment or device_replacement")
    # The identity as this broker proofed it; it becomes (or must match) the investor only
    # when an officer approves, so an unapproved submission changes nothing shared.
    id_kind: str | None = Field(default=None, max_length=20)
    id_hmac: str | None = Field(default=None, max_length=64, index=True)
    id_masked: str | None = Field(default=None, max_length=16)
    name: str | None = Field(default=None, max_length=200)
    birth_date: dt.date | None = None
    contact_channel: str | None = Field(default=None, max_length=200)
    accounts: str = Field(sa_column=Column(Text, nullable=False), description="JSON list of account numbers")
    proofing: str = Field(max_length=200, description="how identity was proofed")
    key_algorithm: str = Field(default="EC_P256", max_length=16, sa_column_kwargs={"server_default": "EC_P256"},
                               description="the HSM key type the credential gets: EC_P256, RSA_2048, RSA_3072")
    status: str = Field(default="pending", max_length=16, index=True)
    submitted_by: str = Field(max_length=200)
    approved_by: str | None = Field(default=None, max_length=200)
    submitted_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    approved_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class ActivationCode(SQLModel, table=True):
    """A one-time activation code, stored only as a hash; 15 minutes, 5 attempts."""

    __tablename__ = "ra_activation_code"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True, description="names the code; sent with it")
    enrolment_id: int = Field(foreign_key="ra_enrolment.id", unique=True)
    code_hash: str = Field(max_length=64)
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    attempts: int = 0
    used_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class OutboxMessage(SQLModel, table=True):
    """A message for the investor that a delivery worker sends out of band (SMS, e-mail)."""

    __tablename__ = "ra_outbox"

    id: int | None = Field(default=None, primary_key=True)
    enrolment_id: int | None = Field(default=None, foreign_key="ra_enrolment.id", index=True)
    recipient: str = Field(max_length=200)
    kind: str = Field(max_length=50)
    payload: str = Field(sa_column=Column(Text, nullable=False), description="JSON")
    secret: str | None = Field(default=None, max_length=64,
                               description="the activation code in clear, until redeemed, replaced or expired")
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    delivered_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class Credential(SQLModel, table=True):
    """An investor's cloud-held signing credential: HSM key, certificate, device, PIN.

    ``current`` is 1 for the credential in use and NULL otherwise; the unique constraint on
    (investor_id, current) therefore allows one current credential per investor.
    """

    __tablename__ = "ra_credential"
    __table_args__ = (UniqueConstraint("investor_id", "current", name="uq_ra_current_credential"),)

    id: int | None = Field(default=None, primary_key=True)
    credential_id: str = Field(max_length=64, unique=True, description="the CSC credentialID")
    investor_id: int = Field(foreign_key="ra_investor.id", index=True)
    current: int | None = Field(default=1)
    key_label: str = Field(max_length=128)
    key_algorithm: str = Field(default="EC_P256", max_length=16, sa_column_kwargs={"server_default": "EC_P256"})
    certificate_serial: str | None = Field(default=None, max_length=42, index=True)
    status: str = Field(default="active", max_length=16, description="active, suspended, revoked, superseded")
    device_public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    device_registered_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    pin_salt: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    pin_hmac: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    pin_failures: int = 0
    locked_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class AppChallenge(SQLModel, table=True):
    """A single-use server challenge the enrolled device signs to prove possession."""

    __tablename__ = "ra_app_challenge"

    id: str = Field(primary_key=True, max_length=64)
    credential_id: str = Field(max_length=64, index=True)
    nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    expires_at: dt.datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: dt.datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
