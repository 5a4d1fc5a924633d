"""A real frozen meeting for the auditor-bundle tests, built once per test run through the
service functions: superseded ballots, a revocation and re-vote, a proxy override, an
in-person e-voter, an in-room voter, a nominee's split vote, a void election, a recusal, an
election and an extempore motion; then frozen and exported as a bundle."""

from __future__ import annotations

import atexit
import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update

from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from ra import secrets as ra_secrets
from tests.conftest import make_platform, make_settings
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import revocation, revoke
from tests.voting.test_ballots import OPERATOR, signed, submit, voter
from voting import ballot_log, bundle, bundle_format as fmt, service
from voting.attendance import record_attendance, record_recusal, register_proxy
from voting.calendar import TAIPEI
from voting.models import Holder, Meeting
from voting.service import AgendaItemIn, CandidateIn

HOST = Actor("hana", Role.ISSUER_HOST, "2330")
BIG = 2**60 + 7  # a share count no float or 64-bit double keeps exactly
ITEMS = [AgendaItemIn("1", "ordinary", "Distribution of 2025 earnings"),
         AgendaItemIn("2", "special", "Amend the articles of incorporation", article="277"),
         AgendaItemIn("3", "election", "Directors", seats=2,
                      candidates=(CandidateIn("C1", "Lin"), CandidateIn("C2", "Chen"), CandidateIn("C3", "Wang")))]
# holder, national id, shares, non-voting shares, nominee
REGISTER = [("H001", NATIONAL_IDS[0], BIG, 0, False), ("H002", NATIONAL_IDS[1], 700, 0, False),
            ("H003", NATIONAL_IDS[2], 400, 0, False), ("H004", NATIONAL_IDS[3], 300, 0, False),
            ("H005", NATIONAL_IDS[4], 250, 0, True), ("H006", NATIONAL_IDS[5], 90, 0, False),
            ("H007", NATIONAL_IDS[6], 60, 10, False)]


@dataclass
class FrozenMeeting:
    """The platform, the frozen meeting and its bundle, and the root to verify it with."""

    platform: Platform
    public_id: str
    meeting_id: int
    bundle: bytes
    root: x509.Certificate
    directory: Path

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(Encoding.PEM)


_BUILT: dict[str, FrozenMeeting] = {}


def frozen_meeting(directory_factory: Callable[[str], Path]) -> FrozenMeeting:
    """The meeting, built on the first call of the test run (it takes a few seconds)."""
    if "meeting" not in _BUILT:
        _BUILT["meeting"] = _build(directory_factory("audit-bundle"))
    return _BUILT["meeting"]


def published_meeting(platform: Platform, title: str = "2026 AGM") -> Meeting:
    """A published meeting of issuer 2330 with ``REGISTER``, its window open now."""
    today = dt.datetime.now(TAIPEI).date()
    with session_scope(platform.engine) as session:
        if "2330" not in {issuer.code for issuer in service.list_issuers(session, OPERATOR)}:
            service.create_issuer(session, actor=OPERATOR, code="2330", name="台灣積體電路製造")
        meeting = service.create_meeting(
            session, actor=HOST, issuer_code="2330", title=title, meeting_date=today + dt.timedelta(days=10),
            book_closure_date=today - dt.timedelta(days=2), notice_published_on=today - dt.timedelta(days=5),
            public_company=True, items=ITEMS, thresholds={"special_majority": "2/3"})
        for holder_no, id_number, shares, non_voting, nominee in REGISTER:
            session.add(Holder(meeting_id=meeting.id or 0, holder_no=holder_no, name=f"Name of {holder_no}",
                               shares=shares, non_voting_shares=non_voting, nominee=nominee,
                               non_voting_reason="treasury" if non_voting else None,
                               id_hmac=ra_secrets.identity_hmac(platform.keystore, "national_id", id_number)))
        meeting.register_sha256, meeting.register_holders = "ab" * 32, len(REGISTER)
        session.add(meeting)
        session.flush()
        service.publish_meeting(session, actor=HOST, meeting_id=meeting.id or 0)
        session.expunge(meeting)
        return meeting


def _build(directory: Path) -> FrozenMeeting:
    platform = make_platform(make_settings(directory, f"sqlite:///{directory}/cloudseal.db"))
    atexit.register(platform.close)
    meeting = published_meeting(platform)
    public_id, meeting_id = meeting.public_id, meeting.id or 0
    voters = {no: voter(platform, no, id_number) for no, id_number, *_ in REGISTER[:5]}

    def vote(no: str, choices: dict) -> str:
        return submit(platform, *signed(platform, voters[no], public_id, choices)).status

    assert vote("H001", {"1": "CFOR", "2": "CFOR", "3": {"allocations": {"C1": 1000}}}) == "counted"
    assert vote("H002", {"1": "CAGS", "2": "CFOR", "3": {"allocations": {"C2": 1400}}}) == "counted"
    assert vote("H001", {"1": "CAGS"}) == "superseded"
    assert vote("H003", {"1": "CFOR", "2": "CFOR"}) == "counted"
    assert vote("H004", {"1": "ABST", "2": "CAGS", "3": {"allocations": {"C3": 601}}}) == "counted"  # void election
    assert vote("H005", {"1": {"CFOR": 200, "CAGS": 50}, "2": "CFOR"}) == "counted"  # a nominee's split
    assert revoke(platform, *revocation(platform, voters["H002"], public_id)) == 1
    assert vote("H002", {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C2": 700, "C3": 700}}}) == "counted"
    with session_scope(platform.engine) as session:
        register_proxy(session, actor=HOST, meeting_id=meeting_id, holder_no="H003", proxy_name="Proxy Person")
    with session_scope(platform.engine) as session:  # the deadline passes
        session.execute(update(Meeting).where(Meeting.id == meeting_id).values(closes_at=utcnow()))
    with session_scope(platform.engine) as session:
        service.add_items_at_meeting(session, actor=HOST, meeting_id=meeting_id, items=[
            AgendaItemIn("X1", "extempore", "Motion from the floor")])
        record_attendance(session, actor=HOST, meeting_id=meeting_id, holder_no="H003", mode="proxy",
                          choices={"1": "CAGS", "2": "CAGS", "X1": "CAGS"})
        record_attendance(session, actor=HOST, meeting_id=meeting_id, holder_no="H004", mode="in_person", choices={})
        record_attendance(session, actor=HOST, meeting_id=meeting_id, holder_no="H006", mode="in_person",
                          choices={"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 180}}, "X1": "CFOR"})
        record_recusal(session, actor=HOST, meeting_id=meeting_id, item_key="2", holder_no="H001", reason="interested")
    with session_scope(platform.engine) as session:
        service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting_id)
    with session_scope(platform.engine) as session:
        frozen = session.get(Meeting, meeting_id)
        data = bundle.build_bundle(session, platform.pki, frozen)
        root = platform.pki.ca_certificate(platform.pki.load_ca(session, "root"))
    return FrozenMeeting(platform, public_id, meeting_id, data, root, directory)


def members(data: bytes) -> dict[str, bytes]:
    """Every member of a bundle, by name."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def lines(data: bytes) -> list[dict]:
    """The records of a JSON Lines member."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n" for r in records)


def repack(files: dict[str, bytes], platform: Platform | None = None) -> bytes:
    """A bundle of ``files``; with ``platform``, the manifest's hashes are recomputed and sealed
    again with the platform's own seal (what a misbehaving platform could do)."""
    if platform is not None:
        manifest = json.loads(files[fmt.MANIFEST])
        for name in manifest["files"]:
            manifest["files"][name] = {"sha256": fmt.sha256_hex(files[name]), "bytes": len(files[name])}
        for name in manifest["counts"]["lines"]:
            manifest["counts"]["lines"][name] = len(lines(files[name]))
        files[fmt.MANIFEST] = rfc8785.dumps(manifest)
        with session_scope(platform.engine) as session:
            signature, serial = ballot_log.seal(session, platform.pki, files[fmt.MANIFEST])
        files[fmt.MANIFEST_SEAL] = rfc8785.dumps({"type": fmt.MANIFEST_SEAL_TYPE, "seal_serial": serial,
                                                   "signature": fmt.b64(signature)})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def holder_ids(platform: Platform, meeting_id: int) -> dict[str, int]:
    with session_scope(platform.engine) as session:
        return dict(session.execute(select(Holder.holder_no, Holder.id).where(Holder.meeting_id == meeting_id)).all())
