"""Complete enrolments per second through the service layer (software HSM, SQLite).

One enrolment = submit (identity HMAC in the HSM) → approve (activation code, outbox) →
redeem (device proof, PIN HMAC, P-256 key generated in the HSM, certificate issued with its
OCSP answers), each step its own committed transaction, as the API runs them.
Target: 200 enrolments/s on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from multiprocessing.synchronize import Barrier

from _support import fresh_platform, report, timed_processes
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from cloudseal.platform import Platform, build_platform
from core.auth import Actor, Role
from core.db import session_scope
from core.settings import Settings
from ra import credentials, devices, service
from ra import secrets as ra_secrets
from ra.identity import national_id_is_valid
from ra.models import OutboxMessage

TARGET = 200
OPERATOR = Actor("bench", Role.OPERATOR)


def national_ids(count: int, seed: int) -> list[str]:
    """Distinct valid national IDs (the check digit computed, not guessed)."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        base = rng.choice("ABCDEFGHJKLMNPQRSTUVXYWZIO") + rng.choice("12") + f"{rng.randrange(10**7):07d}"
        for check in "0123456789":
            if national_id_is_valid(base + check):
                found.add(base + check)
                break
    return sorted(found)


def enrol_one(platform: Platform, officer: Actor, id_number: str, device: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """Submit, approve and redeem one investor; return (investor reference, credential id)."""
    with session_scope(platform.engine) as session:
        enrolment_id = service.submit_enrolment(
            session, platform.keystore, actor=officer, broker_code=None, id_kind="national_id",
            id_number=id_number, name="Bench Investor", birth_date=None, contact_channel="sms:+886900000000",
            accounts=[f"ACC-{id_number}"], proofing="bench").id
    with session_scope(platform.engine) as session:
        _, code = service.approve_enrolment(session, actor=officer, enrolment_id=enrolment_id)
        payload = json.loads(session.execute(
            select(OutboxMessage.payload).where(OutboxMessage.enrolment_id == enrolment_id)
            .order_by(OutboxMessage.id.desc()).limit(1)).scalar_one())
        payload["code"] = code
    der = device.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    message = devices.activation_message(payload["activation_id"], ra_secrets.normalise_code(payload["code"]), der)
    with session_scope(platform.engine) as session:
        activated = credentials.redeem_activation(
            session, platform.pki, activation_id=payload["activation_id"], code=payload["code"],
            device_public_key=base64.b64encode(der).decode(),
            device_signature=base64.b64encode(device.sign(message, ec.ECDSA(hashes.SHA256()))).decode(),
            pin="482916")
    return activated.investor_reference, activated.credential_id


def _worker(settings: Settings, broker: str, ids: list[str], ready: Barrier) -> None:
    platform = build_platform(settings)
    officer = Actor("bench-officer", Role.RA_OFFICER, broker)
    device = ec.generate_private_key(ec.SECP256R1())
    ready.wait()
    for id_number in ids:
        enrol_one(platform, officer, id_number, device)
    platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--processes", type=int, default=2, help="worker processes sharing DB and HSM")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    platform, _ = fresh_platform(args.database_url)
    ids = national_ids(args.count + 10, seed=7)
    with session_scope(platform.engine) as session:
        for n in range(args.processes):
            service.create_broker(session, actor=OPERATOR, code=f"B{n:03d}", name=f"Bench broker {n}")
    warm_officer = Actor("bench-officer", Role.RA_OFFICER, "B000")
    device = ec.generate_private_key(ec.SECP256R1())
    for id_number in ids[-10:]:
        enrol_one(platform, warm_officer, id_number, device)
    share = args.count // args.processes
    elapsed = timed_processes(_worker, [(platform.settings, f"B{n:03d}", ids[n * share:(n + 1) * share])
                                        for n in range(args.processes)])
    report("bench/enrol.py complete enrolments", share * args.processes / elapsed, TARGET, "enrolments/s",
           f"({share * args.processes} in {elapsed:.2f}s, {args.processes} processes, "
           f"{platform.settings.database_url.split(':')[0]})")
    platform.close()


if __name__ == "__main__":
    main()
