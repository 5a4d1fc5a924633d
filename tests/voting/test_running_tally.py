"""The live tally (running totals plus the room) equals a full recount at every step, reads no
ballot, reports turnout by hour, and share figures leave the API as strings."""

from __future__ import annotations

import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlmodel import Session

from cloudseal.platform import Platform
from core.db import session_scope
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import meeting_row, revocation, revoke
from tests.voting.test_ballots import HOST, make_meeting, signed, submit, voter
from voting import attendance, ballots, results, running
from voting import service as voting_service
from voting.ballot import parse_ballot, typed_choices
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Meeting, Recusal, RunningTally
from voting.tally import PresentHolder, RegisterEntry, TallyResult, tally_meeting

SHARES = {"H001": 1000, "H002": 700, "H003": 400, "H004": 300, "H005": 250, "H006": 90, "H007": 60}


def pure_tally(session: Session, meeting: Meeting) -> TallyResult:
    """The pure ``tally_meeting`` over the whole register and everyone present, gathered in
    memory: what the streaming recount must equal."""
    agenda = voting_service.agenda_of(voting_service.agenda_rows(session, meeting.id or 0))
    elections = {item.item_id for item in agenda if item.is_election}
    holders = {h.id: h for h in session.execute(select(Holder).where(Holder.meeting_id == meeting.id)).scalars()}
    present: dict[str, PresentHolder] = {}
    for ballot in session.execute(select(BallotRow).where(BallotRow.meeting_id == meeting.id)
                                  .where(BallotRow.status == "counted")).scalars():
        holder_no = holders[ballot.holder_id].holder_no
        present[holder_no] = PresentHolder(holder_no, "evote",
                                           typed_choices(parse_ballot(ballot.payload).choices, elections))
    for entry in session.execute(select(Attendance).where(Attendance.meeting_id == meeting.id)).scalars():
        holder_no = holders[entry.holder_id].holder_no
        if entry.mode != "in_person" or holder_no not in present:
            present[holder_no] = PresentHolder(holder_no, entry.mode,  # type: ignore[arg-type]
                                               typed_choices(json.loads(entry.choices), elections))
    recusals: dict[str, set[str]] = {}
    for recusal, item in session.execute(select(Recusal, AgendaItemRow).join(AgendaItemRow)
                                         .where(AgendaItemRow.meeting_id == meeting.id)):
        recusals.setdefault(item.item_key, set()).add(holders[recusal.holder_id].holder_no)
    register = [RegisterEntry(h.holder_no, h.shares, h.non_voting_shares, h.nominee) for h in holders.values()]
    return tally_meeting(register, agenda, list(present.values()), voting_service.meeting_rules(meeting), recusals)


def check_live_equals_recount(platform: Platform, meeting: Meeting) -> dict[str, object]:
    with session_scope(platform.engine) as session:
        live, _ = results.live_tally(session, meeting)
        recount = results.recount(session, meeting)
        pure = pure_tally(session, meeting)
    assert live.as_dict() == recount.as_dict() == pure.as_dict()
    return live.as_dict()


def test_the_live_tally_equals_a_recount_through_every_kind_of_change(platform_on_each_database: Platform) -> None:
    platform = platform_on_each_database
    holders = [(no, NATIONAL_IDS[n], shares) for n, (no, shares) in enumerate(SHARES.items())]
    public_id = make_meeting(platform, holders, held_yesterday=True)
    meeting = meeting_row(platform, public_id)
    before_close = meeting.closes_at - dt.timedelta(hours=2)
    voters = {no: voter(platform, no, NATIONAL_IDS[n]) for n, no in enumerate(SHARES) if no != "H006"}

    def vote(no: str, choices: dict, minutes: int = 0) -> str:
        payload, cms = signed(platform, voters[no], public_id, choices)
        return submit(platform, payload, cms, received_at=before_close + dt.timedelta(minutes=minutes)).status

    assert vote("H001", {"1": "CFOR", "2": "CFOR", "3": {"allocations": {"C1": 2000}}}) == "counted"
    assert vote("H002", {"1": "CAGS", "2": "CFOR", "3": {"allocations": {"C2": 700, "C3": 700}}}, 1) == "counted"
    assert vote("H002", {"1": "CFOR"}, 2) == "superseded"
    assert vote("H003", {"2": "CAGS", "3": {"allocations": {"C1": 900}}}, 3) == "counted"  # over-allocation: void
    assert vote("H004", {"1": "ABST", "2": "CFOR"}, 70) == "counted"
    assert vote("H005", {"1": "CFOR", "2": "CAGS"}, 71) == "counted"
    assert vote("H007", {"2": "CFOR"}, 72) == "counted"
    check_live_equals_recount(platform, meeting)

    # A revocation before the deadline, then a new ballot that counts.
    revoke(platform, *revocation(platform, voters["H003"], public_id), received_at=before_close + dt.timedelta(minutes=5))
    check_live_equals_recount(platform, meeting)
    assert vote("H003", {"1": "CFOR", "2": "CFOR"}, 6) == "counted"

    with session_scope(platform.engine) as session:
        # A proxy overrides H004's e-vote; H005 comes in person and the e-vote stands; H006 votes in the room.
        attendance.register_proxy(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H004", proxy_name="P")
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H004", mode="proxy",
                                     choices={"1": "CAGS", "2": "CAGS"})
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H005",
                                     mode="in_person", choices={})
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H006",
                                     mode="in_person", choices={"1": "CFOR", "2": "CAGS"})
    check_live_equals_recount(platform, meeting)

    with session_scope(platform.engine) as session:
        # Recusals of an e-voter and of a holder in the room; an extempore motion (e-voters abstain).
        attendance.record_recusal(session, actor=HOST, meeting_id=meeting.id or 0, item_key="2", holder_no="H001",
                                  reason="interested")
        attendance.record_recusal(session, actor=HOST, meeting_id=meeting.id or 0, item_key="1", holder_no="H006",
                                  reason="interested")
        voting_service.add_items_at_meeting(session, actor=HOST, meeting_id=meeting.id or 0, items=[
            voting_service.AgendaItemIn("X1", "extempore", "Motion from the floor")])
        attendance.record_recusal(session, actor=HOST, meeting_id=meeting.id or 0, item_key="X1", holder_no="H007",
                                  reason="interested")
        attendance.record_attendance(session, actor=HOST, meeting_id=meeting.id or 0, holder_no="H006",
                                     mode="in_person", choices={"1": "CFOR", "2": "CAGS", "X1": "CFOR"})
    figures = check_live_equals_recount(platform, meeting)
    special, motion = figures["items"][1], figures["items"][3]  # type: ignore[index]
    assert special["recused_shares"] == 1000 and special["against_votes"] == 300 + 250 + 90
    # E-voters not recused on the motion abstain: H001, H002, H003, H005 (H007 is recused; H004 is a proxy).
    assert (motion["for_votes"], motion["abstain_votes"], motion["recused_shares"]) == (90, 1000 + 700 + 400 + 250, 60)

    with session_scope(platform.engine) as session:
        live = results.tally_for(session, HOST, meeting.id or 0)
        voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting.id or 0)
    with session_scope(platform.engine) as session:
        frozen = results.tally_for(session, HOST, meeting.id or 0)
        stored = session.get(RunningTally, meeting.id)
    assert stored is not None and stored.frozen_tally is not None
    assert {**live, "status": "frozen"} == frozen


def test_turnout_by_taipei_hour_and_share_figures_as_strings(platform: Platform) -> None:
    holders = [("H001", NATIONAL_IDS[0], 1000), ("H002", NATIONAL_IDS[1], 2**60)]
    public_id = make_meeting(platform, holders, held_yesterday=True)
    meeting = meeting_row(platform, public_id)
    at = meeting.closes_at - dt.timedelta(hours=3)  # 21:00 Taipei on the last day
    for n, no in enumerate(("H001", "H002")):
        who = voter(platform, no, NATIONAL_IDS[n])
        submit(platform, *signed(platform, who, public_id, {"1": "CFOR"}), received_at=at + dt.timedelta(minutes=61 * n))
    with session_scope(platform.engine) as session:
        tally = results.tally_for(session, HOST, meeting.id or 0)
    turnout = tally["turnout"]
    assert turnout == {"holders_voted": 2, "shares_voted": str(1000 + 2**60), "outstanding_shares": str(1000 + 2**60),
                       "by_hour": [
                           {"hour": running.hour_key(at), "holders": 1, "shares": "1000", "holders_voted": 1,
                            "shares_voted": "1000"},
                           {"hour": running.hour_key(at + dt.timedelta(minutes=61)), "holders": 1,
                            "shares": str(2**60), "holders_voted": 2, "shares_voted": str(1000 + 2**60)}]}
    assert running.hour_key(at).endswith("T21:00+08:00")
    first = tally["items"][0]  # type: ignore[index]
    assert first["for_votes"] == str(1000 + 2**60) and tally["present_shares"] == str(1000 + 2**60)
    election = tally["items"][2]  # type: ignore[index]
    assert election["seats"] == 2 and election["void_ballots"] == 0 and election["votes_available"] == str(
        2 * (1000 + 2**60))


def test_the_live_tally_reads_no_ballot(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    holders = [(f"H00{n + 1}", NATIONAL_IDS[n], 100 * (n + 1)) for n in range(3)]
    public_id = make_meeting(platform, holders)
    for n, (no, _, _) in enumerate(holders):
        submit(platform, *signed(platform, voter(platform, no, NATIONAL_IDS[n]), public_id, {"1": "CFOR"}))
    parsed: list[bytes] = []
    real_read = results.stored_choices
    monkeypatch.setattr(results, "stored_choices",
                        lambda payload, elections: parsed.append(payload) or real_read(payload, elections))
    meeting = meeting_row(platform, public_id)
    with session_scope(platform.engine) as session:
        live, _ = results.live_tally(session, meeting)
    assert parsed == [] and live.item("1").for_votes == 600
    with session_scope(platform.engine) as session:
        results.recount(session, meeting)
    assert len(parsed) == 3


def test_a_meeting_without_running_totals_is_recounted(platform: Platform) -> None:
    public_id = make_meeting(platform, [("H001", NATIONAL_IDS[0], 1000)])
    submit(platform, *signed(platform, voter(platform, "H001", NATIONAL_IDS[0]), public_id, {"1": "CFOR"}))
    meeting = meeting_row(platform, public_id)
    with session_scope(platform.engine) as session:
        session.delete(session.execute(select(RunningTally)).scalar_one())
    with session_scope(platform.engine) as session:
        tally = results.tally_for(session, HOST, meeting.id or 0)
    assert tally["items"][0]["for_votes"] == "1000" and tally["turnout"]["holders_voted"] == 1  # type: ignore[index]


def test_parallel_ballots_of_many_holders_lose_no_update_of_the_running_totals(any_platform: Platform) -> None:
    holders = [(f"H{n:03d}", NATIONAL_IDS[n], 100 + n) for n in range(8)]
    public_id = make_meeting(any_platform, holders)
    voters = [voter(any_platform, no, NATIONAL_IDS[n]) for n, (no, _, _) in enumerate(holders)]
    submissions = [signed(any_platform, who, public_id, {"1": ("CFOR", "CAGS", "ABST")[k]})
                   for who in voters for k in range(3)]
    start = threading.Barrier(len(submissions))

    def send(submission: tuple[bytes, bytes]) -> str:
        start.wait()
        with Session(any_platform.engine, expire_on_commit=False) as session:
            receipt = ballots.submit_ballot(session, any_platform.pki, payload=submission[0], cms=submission[1])
            session.commit()
            return receipt.status

    with ThreadPoolExecutor(len(submissions)) as pool:
        statuses = list(pool.map(send, submissions))
    assert statuses.count("counted") == 8
    meeting = meeting_row(any_platform, public_id)
    figures = check_live_equals_recount(any_platform, meeting)
    first = figures["items"][0]  # type: ignore[index]
    assert first["for_votes"] + first["against_votes"] + first["abstain_votes"] == sum(100 + n for n in range(8))
    with session_scope(any_platform.engine) as session:
        assert results.tally_for(session, HOST, meeting.id or 0)["turnout"]["holders_voted"] == 8  # type: ignore[index]
