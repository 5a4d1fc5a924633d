"""Running totals of a meeting's e-votes, so the live tally costs the same at the first ballot
and at the millionth.

Whatever makes a ballot start or stop counting (its arrival, a revocation, a proxy) adds or
subtracts that ballot's figures in the meeting's :class:`voting.models.RunningTally` row, in
the same transaction and under the meeting's lock. The live tally is those figures plus the
few entries of the room (attendance, in-room votes, recusals), decided by the same pure
:func:`voting.tally.decide` as a full recount. Freezing recounts from the stored ballots, the
figure of record; the tests hold both ways equal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from core.db import UTCDateTime, utcnow
from voting.agenda import AgendaItem, Choice
from voting.ballot import parse_ballot, typed_choices
from voting.calendar import TAIPEI
from voting.models import BallotRow, Holder, RunningTally
from voting.tally import PresentHolder, TallyCounts


# Built once: every counted ballot runs them.
_LOCK = (select(RunningTally.counts, RunningTally.turnout).where(RunningTally.meeting_id == bindparam("meeting_id"))
         .with_for_update())
_STORE = (update(RunningTally).where(RunningTally.meeting_id == bindparam("tally_meeting"))
          .values(counts=bindparam("new_counts"), turnout=bindparam("new_turnout"),
                  updated_at=bindparam("now", type_=UTCDateTime())))


@dataclass(frozen=True)
class CountedBallot:
    """What a counted e-vote contributes: who, with how many votable shares, which choices, when."""

    holder_no: str
    votable_shares: int
    nominee: bool
    choices: Mapping[str, Choice]
    received_at: dt.datetime

    def voter(self) -> PresentHolder:
        return PresentHolder(self.holder_no, "evote", self.choices)


def hour_key(moment: dt.datetime) -> str:
    """The Taipei hour a moment falls in, e.g. ``2026-06-01T10:00+08:00`` (turnout buckets)."""
    return moment.astimezone(TAIPEI).strftime("%Y-%m-%dT%H:00%z")[:-2] + ":00"


def start(session: Session, meeting_id: int) -> None:
    """Create the meeting's running totals when it is published (the register is then fixed)."""
    outstanding = 0
    for shares, non_voting in session.execute(select(Holder.shares, Holder.non_voting_shares)
                                              .where(Holder.meeting_id == meeting_id)):
        outstanding += shares - non_voting
    session.execute(insert(RunningTally).values(
        meeting_id=meeting_id, outstanding_shares=outstanding, counts=json.dumps(TallyCounts().to_json()),
        turnout="{}", updated_at=utcnow()))


def apply(session: Session, meeting_id: int, agenda: Sequence[AgendaItem], ballots: Iterable[CountedBallot],
          sign: int) -> None:
    """Count ``ballots`` in (``sign=1``) or out (``sign=-1``) of the meeting's running totals.

    A meeting published before running totals were kept has no row: its tally recounts.
    """
    ballots = list(ballots)
    if not ballots:
        return
    row = session.connection().execute(_LOCK, {"meeting_id": meeting_id}).first()
    if row is None:
        return
    counts = TallyCounts.from_json(json.loads(row.counts))
    turnout: dict[str, list[int]] = json.loads(row.turnout)
    items = {item.item_id: item for item in agenda}
    for ballot in ballots:
        counts.add(items, ballot.voter(), ballot.votable_shares, nominee=ballot.nominee, sign=sign)
        bucket = turnout.setdefault(hour_key(ballot.received_at), [0, 0])
        bucket[0] += sign
        bucket[1] += sign * ballot.votable_shares
    session.connection().execute(_STORE, {"tally_meeting": meeting_id, "new_counts": json.dumps(counts.to_json()),
                                          "new_turnout": json.dumps(turnout, sort_keys=True), "now": utcnow()})


def counted_ballots(session: Session, meeting_id: int, ballot_ids: Iterable[int],
                    elections: set[str]) -> list[CountedBallot]:
    """Those of ``ballot_ids`` that count now, with what they contribute (read before their
    status changes, to count them out)."""
    ids = list(ballot_ids)
    if not ids:
        return []
    rows = session.execute(
        select(BallotRow.payload, BallotRow.received_at, Holder.holder_no, Holder.shares, Holder.non_voting_shares,
               Holder.nominee)
        .join(Holder, Holder.id == BallotRow.holder_id)
        .where(BallotRow.meeting_id == meeting_id).where(BallotRow.status == "counted")
        .where(BallotRow.id.in_(ids)))  # type: ignore[union-attr]
    return [CountedBallot(r.holder_no, r.shares - r.non_voting_shares, r.nominee,
                          typed_choices(parse_ballot(r.payload).choices, elections), r.received_at)
            for r in rows]


def load(session: Session, meeting_id: int) -> tuple[int, TallyCounts, dict[str, list[int]], str | None] | None:
    """Outstanding shares, the e-voters' counts, turnout by hour and the frozen tally JSON
    (``None`` for a meeting without running totals)."""
    row = session.execute(select(RunningTally.outstanding_shares, RunningTally.counts, RunningTally.turnout,
                                 RunningTally.frozen_tally).where(RunningTally.meeting_id == meeting_id)).first()
    if row is None:
        return None
    return (row.outstanding_shares, TallyCounts.from_json(json.loads(row.counts)), json.loads(row.turnout),
            row.frozen_tally)
