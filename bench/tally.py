"""Tally of a meeting with 1,000,000 holders who all voted. Target: under 2 s.

Two figures, for the two ways the platform tallies:

* **live** (what a host's screen and the tally endpoint read while ballots arrive): a real
  database (SQLite by default) holds the register, the counted ballots, 1,000 holders in the
  room (some recused) and the running totals the ballot path keeps; the benchmark times
  ``voting.results.tally_for``, the whole JSON answer. The running totals are built here
  with the same ``TallyCounts.add`` the ballot path calls for each counted ballot (sending a
  million signed ballots is ``bench/ballots.py``'s job); the tests hold the live tally equal
  to a recount.
* **recount** (what the offline auditor repeats): the pure ``voting.tally.tally_meeting``
  over every holder's typed choices, in memory;
* **recount from the database** (what freezing records): ``voting.results.recount`` reading
  the register and every counted ballot (canonical, as the ballot path stores them) of the
  stored meeting back, streamed.

Five resolutions (one special) and a five-seat cumulative election among eight candidates;
a few nominees split their votes and a few holders over-allocate and void their election.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time

from _support import fresh_platform, python_loop_seconds, report
from sqlalchemy import insert, select, update

from core.auth import Actor, Role
from core.db import session_scope, utcnow
from voting import results, running
from voting import service as voting
from voting.agenda import AgendaItem, ElectionVote, SplitVote
from voting.ballot import build_ballot
from voting.calendar import TAIPEI
from voting.models import AgendaItemRow, Attendance, BallotRow, Holder, Meeting, Recusal, RunningTally
from voting.tally import PresentHolder, RegisterEntry, TallyCounts, tally_meeting
from voting.thresholds import MeetingRules

TARGET_SECONDS = 2.0
IN_ROOM = 1000
CANDIDATES = tuple(f"C{n}" for n in range(1, 9))
AGENDA = [AgendaItem("1", "acknowledgement", "Business report"), AgendaItem("2", "ordinary", "Dividend"),
          AgendaItem("3", "ordinary", "Capital from earnings"), AgendaItem("4", "special", "Articles", article="277"),
          AgendaItem("5", "ordinary", "Release of directors"),
          AgendaItem("6", "election", "Directors", seats=5, candidates=CANDIDATES)]
OPERATOR = Actor("bench-ops", Role.OPERATOR)
HOST = Actor("bench-host", Role.ISSUER_HOST, "2330")


def build(holders: int) -> tuple[list[RegisterEntry], list[PresentHolder]]:
    """The register and everyone's choices: e-voters first, the last ``IN_ROOM`` in the room."""
    rng = random.Random(7)
    register, present = [], []
    codes = ("CFOR", "CFOR", "CFOR", "CAGS", "ABST")
    for n in range(holders):
        shares = rng.randrange(1, 100_000)
        nominee = n % 97 == 0
        register.append(RegisterEntry(f"{n:08d}", shares, shares // 10 if n % 1000 == 1 else 0, nominee))
        votable = register[-1].votable_shares
        choices: dict[str, object] = {}
        for item in ("1", "2", "3", "4", "5"):
            choices[item] = SplitVote(votable // 2, votable // 4, 0) if nominee else rng.choice(codes)
        votes = votable * 5 + (1 if n % 5000 == 0 else 0)  # a few over-allocate: their election is void
        first, second = rng.sample(CANDIDATES, 2)
        choices["6"] = ElectionVote({first: votes // 2, second: votes - votes // 2})
        mode = "in_person" if n >= holders - IN_ROOM else "evote"
        present.append(PresentHolder(f"{n:08d}", mode, choices))  # type: ignore[arg-type]
    return register, present


def _json_choices(choices: dict[str, object]) -> dict[str, object]:
    return {item: (choice.to_json() if hasattr(choice, "to_json") else choice)  # type: ignore[union-attr]
            for item, choice in choices.items()}


def stored_meeting(register: list[RegisterEntry], present: list[PresentHolder], database_url: str | None) -> tuple:
    """A platform whose database holds the meeting as the ballot path and the host leave it."""
    platform, _ = fresh_platform(database_url)
    today = dt.datetime.now(TAIPEI).date()
    items = [voting.AgendaItemIn(i.item_id, i.kind, i.title, article=i.article, seats=i.seats,
                                 candidates=tuple(voting.CandidateIn(c, c) for c in i.candidates)) for i in AGENDA]
    with session_scope(platform.engine) as session:
        voting.create_issuer(session, actor=OPERATOR, code="2330", name="Bench Issuer")
        meeting = voting.create_meeting(
            session, actor=HOST, issuer_code="2330", title="Bench AGM", meeting_date=today - dt.timedelta(days=1),
            book_closure_date=today - dt.timedelta(days=40), notice_published_on=today - dt.timedelta(days=30),
            public_company=True, items=items)
        meeting_id, public_id = meeting.id or 0, meeting.public_id
    received = utcnow() - dt.timedelta(days=5)
    with session_scope(platform.engine) as session:
        connection = session.connection()
        for start in range(0, len(register), 20_000):
            connection.execute(insert(Holder), [
                {"meeting_id": meeting_id, "holder_no": e.holder_no, "id_hmac": "0" * 64, "name": e.holder_no,
                 "shares": e.shares, "non_voting_shares": e.non_voting_shares, "nominee": e.nominee}
                for e in register[start:start + 20_000]])
        connection.execute(update(Meeting).where(Meeting.id == meeting_id)
                           .values(register_sha256="0" * 64, register_holders=len(register)))
    with session_scope(platform.engine) as session:
        voting.publish_meeting(session, actor=OPERATOR, meeting_id=meeting_id)
    with session_scope(platform.engine) as session:
        connection = session.connection()
        ids = dict(connection.execute(select(Holder.holder_no, Holder.id).where(Holder.meeting_id == meeting_id)).all())
        item_ids = dict(connection.execute(select(AgendaItemRow.item_key, AgendaItemRow.id)
                                           .where(AgendaItemRow.meeting_id == meeting_id)).all())
        evoters = [p for p in present if p.mode == "evote"]
        for start in range(0, len(evoters), 20_000):
            connection.execute(insert(BallotRow), [
                {"meeting_id": meeting_id, "holder_id": ids[p.holder_no], "ballot_sha256": f"{n + start:064x}",
                 "payload": build_ballot(public_id, p.holder_no, p.choices, f"bench-nonce-{n + start:08d}",
                                         received),
                 "cms": b"", "signer_serial": "00", "investor_reference": p.holder_no, "received_at": received,
                 "status": "counted", "item_status": "{}", "leaf_index": n + start}
                for n, p in enumerate(evoters[start:start + 20_000])])
        room = [p for p in present if p.mode != "evote"]
        connection.execute(insert(Attendance), [
            {"meeting_id": meeting_id, "holder_id": ids[p.holder_no], "mode": p.mode,
             "choices": json.dumps(_json_choices(p.choices)), "entered_by": HOST.label,  # type: ignore[arg-type]
             "entered_at": utcnow()} for p in room])
        connection.execute(insert(Recusal), [
            {"item_id": item_ids["5"], "holder_id": ids[p.holder_no], "reason": "interested",
             "entered_by": HOST.label} for p in room[:10]])
        # The running totals, as the ballot path leaves them after each counted ballot.
        entries = {e.holder_no: e for e in register}
        agenda = {item.item_id: item for item in AGENDA}
        counts, turnout = TallyCounts(), {running.hour_key(received): [0, 0]}
        for p in evoters:
            entry = entries[p.holder_no]
            counts.add(agenda, p, entry.votable_shares, nominee=entry.nominee)
            turnout[running.hour_key(received)][0] += 1
            turnout[running.hour_key(received)][1] += entry.votable_shares
        connection.execute(update(RunningTally).where(RunningTally.meeting_id == meeting_id)
                           .values(counts=json.dumps(counts.to_json()), turnout=json.dumps(turnout)))
    return platform, meeting_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--holders", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="e.g. a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    register, present = build(args.holders)
    recusals = {"5": {p.holder_no for p in present if p.mode != "evote"}}
    recusals["5"] = set(sorted(recusals["5"])[:10])

    started = time.perf_counter()
    recount = tally_meeting(register, AGENDA, present, MeetingRules(public_company=True), recusals)
    recount_seconds = time.perf_counter() - started

    platform, meeting_id = stored_meeting(register, present, args.database_url)
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        with session_scope(platform.engine) as session:
            live = results.tally_for(session, HOST, meeting_id)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    with session_scope(platform.engine) as session:
        stored = results.recount(session, session.get(Meeting, meeting_id))  # type: ignore[arg-type]
    stored_seconds = time.perf_counter() - started
    platform.close()
    assert live == results.shares_as_strings({**live, **recount.as_dict()}), "the live tally differs from the recount"
    assert stored == recount, "the recount from the database differs from the pure one"
    live_seconds = statistics.median(timings)
    database = "PostgreSQL" if args.database_url else "SQLite"
    special = recount.item("4")
    report(f"bench/tally.py live tally ({database})", args.holders / live_seconds, 1_000_000 / TARGET_SECONDS,
           "holders/s", f"{args.holders:,} holders in {live_seconds * 1000:.1f} ms (median of {args.runs}; "
           f"target: 1,000,000 in under {TARGET_SECONDS:.0f} s)")
    report("bench/tally.py recount (pure, as the auditor counts)", args.holders / recount_seconds,
           1_000_000 / TARGET_SECONDS, "holders/s",
           f"{args.holders:,} holders in {recount_seconds:.2f} s; special resolution {special.rule}, "
           f"adopted={special.adopted}")
    report(f"bench/tally.py recount from the database ({database}, freezing)", args.holders / stored_seconds,
           1_000_000 / TARGET_SECONDS, "holders/s",
           f"{args.holders:,} holders in {stored_seconds:.2f} s: every counted ballot and the register read back")
    print(f"host speed: 10M Python additions take {python_loop_seconds():.2f} s")


if __name__ == "__main__":
    main()
