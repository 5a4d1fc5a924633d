"""Group commit: ballots recorded together keep every rule, leaf, tree head and receipt of their own."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlmodel import Session

from ca.bootstrap import current_seal
from cloudseal.app import create_app
from cloudseal.platform import Platform
from core import audit
from core.db import make_engine, session_scope
from core.errors import AppError
from core.models import AuditEvent
from tests.ra.factories import NATIONAL_IDS
from tests.support.servers import LiveServer
from tests.voting.test_running_tally import check_live_equals_recount
from tests.voting.test_ballots import make_meeting, signed, submit, voter
from voting import ballot_log, ballots, merkle
from voting.intake import BallotIntake
from voting.log_records import tree_head_statement
from voting.models import BallotRow, Meeting


def checked(platform: Platform, submission: tuple[bytes, bytes], **kw: object) -> ballots.CheckedBallot:
    with Session(platform.read_engine, expire_on_commit=False) as reader:
        return ballots.check_ballot(reader, platform.pki, payload=submission[0], cms=submission[1], **kw)  # type: ignore[arg-type]


def record(platform: Platform, group: list[ballots.CheckedBallot]) -> list[ballots.Receipt | AppError]:
    with session_scope(platform.engine) as session:
        return ballots.record_ballots(session, platform.pki, group)


def seal_key(platform: Platform) -> ec.EllipticCurvePublicKey:
    with session_scope(platform.engine) as session:
        return x509.load_der_x509_certificate(current_seal(session, platform.pki).der).public_key()  # type: ignore[return-value]


def meeting_id(platform: Platform, public_id: str) -> int:
    with session_scope(platform.engine) as session:
        return session.execute(select(Meeting.id).where(Meeting.public_id == public_id)).scalar_one()


def test_a_group_over_two_meetings_gets_a_leaf_tree_head_and_sealed_receipt_per_ballot(platform: Platform) -> None:
    holders = [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)]
    first, second = make_meeting(platform, holders), make_meeting(platform, holders, title="2026 EGM")
    alice, bob = voter(platform, "H001", NATIONAL_IDS[0]), voter(platform, "H002", NATIONAL_IDS[1])
    group = [checked(platform, signed(platform, who, meeting, choices))
             for who, meeting, choices in [(alice, first, None), (bob, second, None), (alice, first, {"1": "CAGS"}),
                                           (bob, first, None), (alice, second, None)]]
    outcomes = record(platform, group)

    assert [o.status for o in outcomes] == ["counted", "counted", "superseded", "counted", "counted"]  # type: ignore[union-attr]
    # Each meeting's log takes its ballots in the order of the group, one tree head after each.
    assert [(o.statement["meeting"], o.statement["leaf_index"], o.statement["tree_head"]["tree_size"])  # type: ignore[union-attr,index]
            for o in outcomes] == [(first, 0, 1), (second, 0, 1), (first, 1, 2), (first, 2, 3), (second, 1, 2)]
    key = seal_key(platform)
    for outcome in outcomes:
        assert isinstance(outcome, ballots.Receipt)
        key.verify(outcome.signature, rfc8785.dumps(outcome.statement), ec.ECDSA(hashes.SHA256()))
        head = outcome.statement["tree_head"]
        key.verify(base64.b64decode(head["signature"]),  # type: ignore[index]
                   tree_head_statement(head["meeting"], head["tree_size"], base64.b64decode(head["root_hash"]),  # type: ignore[index]
                                       dt.datetime.fromisoformat(head["issued_at"].replace("Z", "+00:00"))),  # type: ignore[index]
                   ec.ECDSA(hashes.SHA256()))
    for public_id in (first, second):
        mid = meeting_id(platform, public_id)
        with session_scope(platform.engine) as session:
            leaves = ballot_log.leaf_hashes(session, mid)
            assert merkle.root_hash(leaves) == ballot_log.latest_tree_head(session, mid).root_hash  # type: ignore[union-attr]
            meeting = session.get(Meeting, mid)
        # The running totals the hosts watch equal a recount of the stored ballots.
        check_live_equals_recount(platform, meeting)  # type: ignore[arg-type]
    with session_scope(platform.engine) as session:
        assert not audit.verify_chain(session).problems
        assert session.execute(select(func.count()).select_from(AuditEvent)
                               .where(AuditEvent.action == "ballot.receive")).scalar_one() == 5


def test_a_refusal_under_the_lock_leaves_the_rest_of_the_group_recorded(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)])
    alice, bob = voter(platform, "H001", NATIONAL_IDS[0]), voter(platform, "H002", NATIONAL_IDS[1])
    earlier = signed(platform, alice, meeting)
    submit(platform, *earlier)
    twice = checked(platform, signed(platform, bob, meeting))
    with session_scope(platform.engine) as session:
        closes_at = session.execute(select(Meeting.closes_at).where(Meeting.public_id == meeting)).scalar_one()
    late = dataclasses.replace(checked(platform, signed(platform, alice, meeting)), received_at=closes_at)
    group = [checked(platform, earlier), twice, late, twice, checked(platform, signed(platform, alice, meeting))]
    outcomes = record(platform, group)

    assert [o.code if isinstance(o, AppError) else o.status for o in outcomes] == [
        "duplicate_ballot", "counted", "voting_closed", "duplicate_ballot", "superseded"]
    mid = meeting_id(platform, meeting)
    with session_scope(platform.engine) as session:
        assert session.execute(select(func.count()).select_from(BallotRow)).scalar_one() == 3
        assert ballot_log.log_size(session, mid) == 3


def test_a_group_that_fails_as_a_whole_is_recorded_one_by_one(platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)])
    alice, bob = voter(platform, "H001", NATIONAL_IDS[0]), voter(platform, "H002", NATIONAL_IDS[1])
    good = [checked(platform, signed(platform, who, meeting)) for who in (alice, bob)]
    # A defect no check anticipated (here: voided items that cannot be stored) fails its transaction.
    broken = dataclasses.replace(checked(platform, signed(platform, alice, meeting)), item_status={"3": {1, 2}})
    intake = BallotIntake(platform.engine, platform.pki)

    async def send(ballot: ballots.CheckedBallot) -> str:
        try:
            return (await intake.submit(ballot)).status
        except TypeError:
            return "failed alone"

    async def together() -> list[str]:  # submitted in one turn of the loop: one group
        return list(await asyncio.gather(*(send(ballot) for ballot in [good[0], broken, good[1]])))

    with caplog.at_level(logging.WARNING, logger="voting.intake"):
        statuses = asyncio.run(together())
    assert "a group of 3 ballots failed as a whole" in caplog.text
    assert statuses[1] == "failed alone"
    assert sorted(statuses[::2]) == ["counted", "counted"]
    with session_scope(platform.engine) as session:
        assert session.execute(select(func.count()).select_from(BallotRow)).scalar_one() == 2


def test_fifty_parallel_http_submissions_by_one_holder_leave_exactly_one_counted(any_platform: Platform) -> None:
    meeting = make_meeting(any_platform, [("H001", NATIONAL_IDS[0], 1000)])
    alice = voter(any_platform, "H001", NATIONAL_IDS[0])
    bodies = [{"payload": base64.b64encode(payload).decode(), "cms": base64.b64encode(cms).decode()}
              for payload, cms in (signed(any_platform, alice, meeting, {"1": "CFOR" if n % 2 else "CAGS"})
                                   for n in range(50))]
    start = threading.Barrier(50)
    with LiveServer(create_app(platform=any_platform, background_refresh=False)) as server:
        def send(body: dict[str, str]) -> tuple[int, dict]:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                start.wait()
                answer = http.post("/voting/ballots", json=body)
                return answer.status_code, answer.json()

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(send, bodies))
    assert {status for status, _ in answers} == {201}
    statuses = [body["status"] for _, body in answers]
    assert statuses.count("counted") == 1 and statuses.count("superseded") == 49
    assert sorted(body["receipt"]["leaf_index"] for _, body in answers) == list(range(50))
    mid = meeting_id(any_platform, meeting)
    with session_scope(any_platform.engine) as session:
        assert session.execute(select(func.count()).select_from(BallotRow)
                               .where(BallotRow.status == "counted")).scalar_one() == 1
        assert merkle.root_hash(ballot_log.leaf_hashes(session, mid)) == \
            ballot_log.latest_tree_head(session, mid).root_hash  # type: ignore[union-attr]
        assert not audit.verify_chain(session).problems


def test_while_another_process_writes_the_intake_keeps_gathering_ballots_into_the_group(platform: Platform) -> None:
    meeting = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 500)])
    alice, bob = voter(platform, "H001", NATIONAL_IDS[0]), voter(platform, "H002", NATIONAL_IDS[1])
    first, second = (checked(platform, signed(platform, who, meeting)) for who in (alice, bob))
    other_process = make_engine(platform.settings.database_url)  # its own write gate, as another worker has
    writing = other_process.connect()
    writing.begin()  # holds SQLite's write turn until the timer ends it
    finish = threading.Timer(0.15, lambda: (writing.rollback(), writing.close()))
    intake = BallotIntake(platform.engine, platform.pki)

    async def scenario() -> list[ballots.Receipt]:
        finish.start()
        early = asyncio.ensure_future(intake.submit(first))
        await asyncio.sleep(0.01)  # the intake found the turn taken and went on serving
        assert not early.done()
        return list(await asyncio.gather(early, intake.submit(second)))

    receipts = asyncio.run(scenario())
    finish.join()
    other_process.dispose()
    assert [r.status for r in receipts] == ["counted", "counted"]
    with session_scope(platform.engine) as session:
        moments = session.execute(select(AuditEvent.occurred_at)
                                  .where(AuditEvent.action == "ballot.receive")).scalars().all()
    assert len(moments) == 2 and moments[0] == moments[1]  # one group: one audit append


def test_a_lock_held_until_the_event_loop_acts_does_not_freeze_the_intake(any_platform: Platform) -> None:
    """A request's transaction may hold the meeting's lock (SQLite: the write turn) until a
    step only the event loop schedules, as FastAPI commits a dependency's session in a later
    thread-pool hop. The intake must not make the loop wait for that lock."""
    meeting = make_meeting(any_platform, [("H001", NATIONAL_IDS[0], 1000)])
    ballot = checked(any_platform, signed(any_platform, voter(any_platform, "H001", NATIONAL_IDS[0]), meeting))
    mid = meeting_id(any_platform, meeting)
    hops = ThreadPoolExecutor(1)
    blocker = Session(any_platform.engine)
    hops.submit(lambda: blocker.execute(select(Meeting.id).where(Meeting.id == mid).with_for_update())).result()
    rescue = threading.Timer(20, blocker.commit)  # never needed unless the loop froze
    rescue.start()
    intake = BallotIntake(any_platform.engine, any_platform.pki)

    async def scenario() -> ballots.Receipt:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: loop.run_in_executor(hops, blocker.commit))  # the "exit hop"
        return await intake.submit(ballot)

    started = time.monotonic()
    receipt = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    rescue.cancel()
    intake.close()
    hops.shutdown()
    blocker.close()
    assert receipt.status == "counted" and elapsed < 10
