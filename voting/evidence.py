"""Revocation evidence kept with each signed submission: the OCSP response about the signer's
certificate that was current when the ballot or revocation was received.

The CA pre-signs its OCSP answers (at issuance, at every status change, and again at half
validity), so the evidence is one read. If the stored answer no longer covers the moment of
receipt (a stopped refresh loop), a fresh one is signed in the same transaction. The auditor
bundle carries these responses, so an auditor can check offline that every counted signature
was good when it arrived.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlmodel import Session

from ca import ocsp
from ca.context import Pki
from ca.models import IssuedCertificate, OcspResponseRecord

_PREFERRED_HASH = "sha256"
_STORED = (
    select(OcspResponseRecord.der, OcspResponseRecord.this_update, OcspResponseRecord.next_update)
    .where(OcspResponseRecord.serial_hex == bindparam("serial"))
    .where(OcspResponseRecord.hash_algorithm == _PREFERRED_HASH)
)
_STORED_MANY = (
    select(OcspResponseRecord.serial_hex, OcspResponseRecord.der, OcspResponseRecord.this_update,
           OcspResponseRecord.next_update)
    .where(OcspResponseRecord.serial_hex.in_(bindparam("serials", expanding=True)))  # type: ignore[attr-defined]
    .where(OcspResponseRecord.hash_algorithm == _PREFERRED_HASH)
)


def status_evidence(session: Session, pki: Pki, serial_hex: str, received_at: dt.datetime) -> bytes | None:
    """The DER OCSP response about ``serial_hex`` whose validity covers ``received_at``
    (signed afresh when the stored one does not); ``None`` when no signer can answer now."""
    row = session.connection().execute(_STORED, {"serial": serial_hex}).first()
    if row is not None and row.this_update <= received_at < row.next_update:
        return row.der
    certificate = session.execute(select(IssuedCertificate).where(IssuedCertificate.serial_hex == serial_hex)
                                  ).scalar_one_or_none()
    if certificate is None:
        return None
    ocsp.publish_status(session, pki, certificate)
    row = session.connection().execute(_STORED, {"serial": serial_hex}).first()
    return row.der if row is not None else None


def status_evidence_many(session: Session, pki: Pki,
                         wanted: Sequence[tuple[str, dt.datetime]]) -> list[bytes | None]:
    """:func:`status_evidence` for several (serial, received_at) pairs: the stored answers in
    one read, a fresh one signed only where the stored one does not cover the receipt."""
    serials = sorted({serial for serial, _ in wanted})
    stored = {row.serial_hex: row for row in session.connection().execute(_STORED_MANY, {"serials": serials})}
    found: list[bytes | None] = []
    for serial, received_at in wanted:
        row = stored.get(serial)
        if row is not None and row.this_update <= received_at < row.next_update:
            found.append(row.der)
        else:
            found.append(status_evidence(session, pki, serial, received_at))
    return found
