"""The demo's platform-side steps: a fresh embedded platform, the in-process HTTP server,
the RA's back office, the issuer's host, the meeting room, freezing, the files, the audit.

Staff work (brokers' RA officers, the issuer's host, operators) calls the service functions
with an explicit actor, as the CLI does; everything the investors do goes through their
phones (:mod:`cloudseal.demo_phone`: the mobile API's reference client over HTTP).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlmodel import Session

from ca import bootstrap as pki_bootstrap
from cloudseal.demo_scenario import AGENDA, BROKERS, ISSUER, MEETING_TITLE, Person, Scenario, register_csv
from cloudseal.migrate import upgrade
from cloudseal.platform import Platform, build_platform
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from core.errors import AppError
from core.settings import Settings
from ra import service as ra_service
from ra.models import BrokerAccount, Credential, OutboxMessage
from voting import attendance, bundle, reports, service
from voting.audit_report import AuditReport
from voting.audit_verify import load_root, verify_bundle
from voting.calendar import TAIPEI
from voting.models import Attendance, BallotRevocation, BallotRow, Meeting
from voting.register import RegisterImport, import_register

OPERATOR = Actor("demo-operator", Role.OPERATOR)
HOST = Actor("demo-host", Role.ISSUER_HOST, ISSUER[0])
# Dual control: one officer of each broker submits, another approves.
SUBMITTERS = {code: Actor(f"{code}-chen", Role.RA_OFFICER, code) for code, _ in BROKERS}
APPROVERS = {code: Actor(f"{code}-lin", Role.RA_OFFICER, code) for code, _ in BROKERS}
ENROLMENT_BATCH = 50  # enrolments an officer submits (then approves) in one transaction
Advance = Callable[[int], None]
T = TypeVar("T")


def new_run_directory(var: Path) -> Path:
    """``VAR/demo/<Taipei time>/``, new for every run (a suffix if two start in one second)."""
    base = var / "demo"
    base.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(TAIPEI).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 100):
        directory = base / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot make a new run directory under {base}")


def point_latest(directory: Path) -> Path:
    """``VAR/demo/latest`` → this run (replaced atomically)."""
    latest = directory.parent / "latest"
    staging = directory.parent / f".latest-{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(directory.name)
    os.replace(staging, latest)
    return latest


def demo_settings(directory: Path, public_url: str) -> Settings:
    """The embedded defaults inside the run directory: SQLite and the software HSM. Nothing
    else is needed, so no TSA (B-LT reports) and no PKCS#11 PIN, whatever the environment says."""
    return Settings(database_url=f"sqlite:///{directory}/cloudseal.db", hsm=f"soft:{directory}/hsm",
                    master_key_file=None, hsm_pin=None, tsa_url=None, public_url=public_url)


def bootstrap(settings: Settings) -> tuple[Platform, list[str]]:
    """``cloudseal migrate`` and ``cloudseal init``: schema, HSM keys, CAs, OCSP signer, seal."""
    upgrade(settings.database_url)
    platform = build_platform(settings)
    created = [f"HSM key {label}" for label in platform.ensure_keys()]
    with session_scope(platform.engine) as session:
        created = pki_bootstrap.bootstrap(session, platform.pki) + created
    return platform, created


def free_socket() -> socket.socket:
    """A listening-ready TCP socket on a free localhost port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(app: FastAPI, sock: socket.socket) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``sock`` in a thread of this process; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process HTTP server did not start")
        time.sleep(0.01)
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def http_client(base_url: str, connections: int) -> httpx.Client:
    """One HTTP client (a pool of ``connections``) shared by every phone."""
    return httpx.Client(base_url=base_url, timeout=60.0,
                        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def root_certificate(platform: Platform) -> x509.Certificate:
    """The platform root: the app pins it, an auditor verifies the bundle with it."""
    with session_scope(platform.engine) as session:
        return platform.pki.ca_certificate(platform.pki.load_ca(session, "root"))


def create_tenants(platform: Platform) -> None:
    """Two brokers under dual control, and the issuer."""
    with session_scope(platform.engine) as session:
        for code, name in BROKERS:
            ra_service.create_broker(session, actor=OPERATOR, code=code, name=name, dual_control=True)
        service.create_issuer(session, actor=OPERATOR, code=ISSUER[0], name=ISSUER[1])


# Enrolment -----------------------------------------------------------------------------------

def _submit(session: Session, platform: Platform, person: Person, broker: str) -> int:
    enrolment = ra_service.submit_enrolment(
        session, platform.keystore, actor=SUBMITTERS[broker], broker_code=None, id_kind=person.id_kind,
        id_number=person.id_number, name=person.name, birth_date=person.birth_date,
        contact_channel=f"sms:+8869{int(person.holder_no[1:]):08d}", accounts=[person.account(broker)],
        proofing="identity document checked in branch (demo)")
    return enrolment.id or 0


def _approve(session: Session, enrolment_id: int, broker: str) -> tuple[str, str | None]:
    """Approve under dual control; the activation id and code the investor receives (if any)."""
    _, code = ra_service.approve_enrolment(session, actor=APPROVERS[broker], enrolment_id=enrolment_id)
    if code is None:
        return "", None
    payload = session.execute(select(OutboxMessage.payload).where(OutboxMessage.enrolment_id == enrolment_id)
                              .where(OutboxMessage.kind == "activation_code")
                              .order_by(OutboxMessage.id.desc()).limit(1)).scalar_one()
    return json.loads(payload)["activation_id"], code


def enrol(platform: Platform, scenario: Scenario, activate: Callable[[Person, str, str], T], *, threads: int,
          advance: Advance) -> dict[str, T]:
    """Every investor: submitted by one officer, approved by another (a batch per transaction),
    the code redeemed by the investor's phone, ``activate(person, activation_id, code)`` (the
    HSM makes the key, the CA the certificate and its OCSP answers). Then the second brokers
    link accounts. The phones by holder number."""
    investors = scenario.investors
    phones: dict[str, T] = {}

    def redeem(item: tuple[Person, str, str]) -> None:
        person, activation_id, code = item
        phones[person.holder_no] = activate(person, activation_id, code)
        advance(1)

    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(investors), ENROLMENT_BATCH):
            batch = investors[start:start + ENROLMENT_BATCH]
            with session_scope(platform.engine) as session:
                submitted = [_submit(session, platform, p, p.broker or "") for p in batch]
            with session_scope(platform.engine) as session:
                codes = [(p, *_approve(session, eid, p.broker or "")) for p, eid in zip(batch, submitted)]
            list(pool.map(redeem, codes))
    linked = [p for p in investors if p.also_at]
    with session_scope(platform.engine) as session:
        submitted = [_submit(session, platform, p, p.also_at or "") for p in linked]
    with session_scope(platform.engine) as session:
        for person, enrolment_id in zip(linked, submitted):  # holds a credential: linked, no new code
            _approve(session, enrolment_id, person.also_at or "")
    return phones


# The meeting -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeetingRef:
    id: int
    public_id: str
    meeting_date: dt.date
    deadline: dt.datetime  # the real closing instant (exclusive), before the demo moves it
    register: RegisterImport


def prepare_meeting(platform: Platform, scenario: Scenario, directory: Path) -> MeetingRef:
    """The host's meeting (notice five days ago, so e-voting is open now; the meeting in ten
    days), its register imported from CSV through ``import_register``, then published."""
    today = dt.datetime.now(TAIPEI).date()
    csv_path = directory / "register.csv"
    csv_path.write_bytes(register_csv(scenario.people))
    with session_scope(platform.engine) as session:
        meeting = service.create_meeting(
            session, actor=HOST, issuer_code=ISSUER[0], title=MEETING_TITLE,
            meeting_date=today + dt.timedelta(days=10), book_closure_date=today - dt.timedelta(days=2),
            notice_published_on=today - dt.timedelta(days=5), public_company=True, items=AGENDA)
        meeting_id, public_id = meeting.id or 0, meeting.public_id
        meeting_date, deadline = meeting.meeting_date, meeting.closes_at
    with session_scope(platform.engine) as session, csv_path.open("rb") as stream:
        summary = import_register(session, platform.keystore, actor=HOST, meeting_id=meeting_id, stream=stream)
    with session_scope(platform.engine) as session:
        service.publish_meeting(session, actor=HOST, meeting_id=meeting_id)
    return MeetingRef(meeting_id, public_id, meeting_date, deadline, summary)


def register_proxies(platform: Platform, meeting: MeetingRef, holders: list[str]) -> None:
    """The host registers proxies for holders who e-voted: the proxy's votes will count."""
    with session_scope(platform.engine) as session:
        for holder_no in holders:
            attendance.register_proxy(session, actor=HOST, meeting_id=meeting.id, holder_no=holder_no,
                                      proxy_name=f"Proxy for {holder_no}")


def pass_deadline(platform: Platform, meeting: MeetingRef) -> dt.datetime:
    """Simulated time: the e-voting deadline is moved to now in the database (as the voting
    tests do), so what follows happens after it on the real clock."""
    now = utcnow()
    with session_scope(platform.engine) as session:
        session.execute(update(Meeting).where(Meeting.id == meeting.id).values(closes_at=now))
    return now


@dataclass(frozen=True)
class RoomEntries:
    in_person: int  # attendance recorded, as stored
    by_proxy: int
    refused: dict[str, str]  # holder -> error code of in-room votes refused


def enter_room(platform: Platform, meeting: MeetingRef, scenario: Scenario) -> RoomEntries:
    """The host enters the room's votes (in person and by proxy); an e-voter who did not
    revoke in time is recorded present, but their in-room votes are refused."""
    refused: dict[str, str] = {}
    proxied = set(scenario.proxied)
    with session_scope(platform.engine) as session:
        for holder_no, choices in scenario.room_choices.items():
            attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id, holder_no=holder_no,
                                         mode="proxy" if holder_no in proxied else "in_person", choices=choices)
    holder_no = scenario.late_revoker
    try:
        with session_scope(platform.engine) as session:
            attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id, holder_no=holder_no,
                                         mode="in_person", choices=scenario.first_choices[holder_no])
    except AppError as exc:
        refused[holder_no] = exc.code
    with session_scope(platform.engine) as session:
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id, holder_no=holder_no,
                                     mode="in_person", choices={})
    with session_scope(platform.engine) as session:
        modes = dict(session.execute(select(Attendance.mode, func.count()).where(Attendance.meeting_id == meeting.id)
                                     .group_by(Attendance.mode)).all())
    return RoomEntries(in_person=modes.get("in_person", 0), by_proxy=modes.get("proxy", 0), refused=refused)


def freeze(platform: Platform, meeting: MeetingRef) -> None:
    """Freeze the final tally; the sealed PDF report is made in the same transaction."""
    with session_scope(platform.engine) as session:
        service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting.id)


@dataclass(frozen=True)
class Outputs:
    directory: Path
    report: Path
    report_sha256: str
    bundle: Path
    root: Path
    register: Path
    manifest_counts: dict[str, Any]


def write_outputs(platform: Platform, meeting: MeetingRef, directory: Path,
                  progress: Callable[[str, int, int], None]) -> Outputs:
    """The sealed PDF report (as stored at freezing), the auditor bundle (as ``cloudseal audit
    bundle`` writes it) and the root certificate an auditor verifies the bundle with."""
    report_path, bundle_path, root_path = directory / "report.pdf", directory / "bundle.zip", directory / "root.crt"
    root_path.write_bytes(root_certificate(platform).public_bytes(Encoding.PEM))
    with session_scope(platform.engine) as session:
        _, report = reports.report_for(session, HOST, meeting.id)
        report_path.write_bytes(report.pdf)
        partial = directory / ".bundle.zip.partial"
        try:
            frozen = bundle.meeting_by_public_id(session, meeting.public_id)
            manifest = bundle.write_bundle(session, platform.pki, frozen, partial, progress=progress)
            os.replace(partial, bundle_path)
        finally:
            partial.unlink(missing_ok=True)
    return Outputs(directory, report_path, report.pdf_sha256, bundle_path, root_path, directory / "register.csv",
                   manifest["counts"])


def verify_offline(outputs: Outputs, progress: Callable[[str, int, int], None]) -> AuditReport:
    """``cloudseal audit verify bundle.zip --root root.crt``: the bundle and the root, nothing else."""
    return verify_bundle(outputs.bundle, load_root(outputs.root.read_bytes()), workers=2, progress=progress)


def ballot_statuses(platform: Platform, meeting: MeetingRef) -> tuple[dict[str, int], int]:
    """Stored ballots by final status, and the revocations accepted."""
    with session_scope(platform.engine) as session:
        rows = session.execute(select(BallotRow.status, func.count()).where(BallotRow.meeting_id == meeting.id)
                               .group_by(BallotRow.status)).all()
        revocations = session.execute(select(func.count(func.distinct(BallotRevocation.payload_sha256)))
                                      .where(BallotRevocation.meeting_id == meeting.id)).scalar_one()
    return {status: count for status, count in rows}, revocations


def frozen_tally(platform: Platform, meeting: MeetingRef) -> dict[str, Any]:
    """The frozen tally as the host's API returns it (share figures as decimal strings)."""
    from voting.results import tally_for

    with session_scope(platform.engine) as session:
        return tally_for(session, HOST, meeting.id)


def broker_figures(platform: Platform) -> tuple[dict[str, int], int, int]:
    """Investors with an account at each broker, those linked to both, and active certificates."""
    with session_scope(platform.engine) as session:
        by_broker = dict(session.execute(select(BrokerAccount.broker_code, func.count(func.distinct(
            BrokerAccount.investor_id))).group_by(BrokerAccount.broker_code)).all())
        per_investor = select(BrokerAccount.investor_id).group_by(BrokerAccount.investor_id).having(
            func.count(func.distinct(BrokerAccount.broker_code)) > 1).subquery()
        both = session.execute(select(func.count()).select_from(per_investor)).scalar_one()
        certificates = session.execute(select(func.count()).select_from(Credential)
                                       .where(Credential.status == "active")).scalar_one()
    return by_broker, both, certificates
