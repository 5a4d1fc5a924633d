"""Enrolment through the service layer (for concurrency tests on every database)."""

from __future__ import annotations

import json

from sqlalchemy import select

from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope
from ra import credentials, service
from ra.models import OutboxMessage
from tests.ra.factories import Phone


def activated_credential(platform: Platform, broker: str = "B001", id_number: str = "A123456789") -> str:
    """Create a broker if needed, enrol, approve and redeem; return the credential id."""
    return activated(platform, broker, id_number)[0]


def activated(platform: Platform, broker: str = "B001", id_number: str = "A123456789") -> tuple[str, Phone]:
    """Like :func:`activated_credential`, also returning the phone that holds the device key."""
    officer = Actor("olivia", Role.RA_OFFICER, broker)
    with session_scope(platform.engine) as session:
        if session.get(service.Broker, broker) is None:
            service.create_broker(session, actor=Actor("ops", Role.OPERATOR), code=broker, name=broker)
    with session_scope(platform.engine) as session:
        enrolment_id = service.submit_enrolment(
            session, platform.keystore, actor=officer, broker_code=None, id_kind="national_id", id_number=id_number,
            name="Service Flow", birth_date=None, contact_channel="sms:+886900000002", accounts=[f"{id_number}-1"],
            proofing="branch").id
    with session_scope(platform.engine) as session:
        service.approve_enrolment(session, actor=officer, enrolment_id=enrolment_id)
    with session_scope(platform.engine) as session:
        message = session.execute(select(OutboxMessage).where(OutboxMessage.kind == "activation_code")
                                  .order_by(OutboxMessage.id.desc()).limit(1)).scalar_one()
        payload = {**json.loads(message.payload), "code": message.secret}
    phone = Phone()
    body = phone.redeem_body(payload)
    with session_scope(platform.engine) as session:
        phone.credential_id = credentials.redeem_activation(
            session, platform.pki, activation_id=body["activation_id"], code=body["code"],
            device_public_key=body["device_public_key"], device_signature=body["device_signature"], pin=body["pin"],
        ).credential_id
    return phone.credential_id, phone
