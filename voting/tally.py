"""The share-weighted tally of a meeting: pure, integer-exact, re-runnable by the auditor.

Figures (all ints, one share one vote):

* votable shares of a holder = shares - non_voting_shares (Art. 179);
* outstanding = votable shares over the whole register; present = over present holders
  (electronic voters count as present, Art. 177-1);
* per resolution: denominator = present - shares of present holders recused on the item
  (Arts. 178, 180; they still count for quorum); for/against/abstain from the choices (split
  votes weighted by their parts, Art. 181); not_voted = the rest of the denominator.
  Electronic voters are deemed to abstain on extempore and amendment items.
* per election (Art. 198): each present holder has votable shares × seats votes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Literal

from voting.agenda import NO_ACTION, VOTE_CODES, AgendaItem, Choice, ElectionVote, SplitVote, is_count
from voting.thresholds import (
    MORE_THAN_HALF,
    MeetingRules,
    Threshold,
    applied_threshold,
    as_threshold,
    decide_ordinary,
    decide_special,
)

AttendanceMode = Literal["evote", "in_person", "proxy"]
ATTENDANCE_MODES: tuple[str, ...] = ("evote", "in_person", "proxy")


class TallyInputError(ValueError):
    """The inputs of a tally are inconsistent (a bug upstream or a tampered bundle)."""


@dataclass(frozen=True)
class RegisterEntry:
    """A holder on the register at book closure."""

    holder_no: str
    shares: int
    non_voting_shares: int = 0
    nominee: bool = False

    def __post_init__(self) -> None:
        if not is_count(self.shares) or not is_count(self.non_voting_shares) or self.non_voting_shares > self.shares:
            raise TallyInputError(f"holder {self.holder_no!r}: need 0 <= non_voting_shares <= shares (ints)")

    @property
    def votable_shares(self) -> int:
        """Shares that carry a vote (Art. 179 shares excluded)."""
        return self.shares - self.non_voting_shares


@dataclass(frozen=True)
class PresentHolder:
    """A holder present at the meeting, how, and their effective choice per item.

    For an electronic voter the choices come from the counted ballot; for an in-room holder
    or a proxy the host enters them. Items left out are not voted.
    """

    holder_no: str
    mode: AttendanceMode
    choices: Mapping[str, Choice] = field(default_factory=dict)


def _jsonable(value: object) -> object:
    if isinstance(value, Threshold):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "as_dict"):
        return value.as_dict()  # type: ignore[union-attr]
    return value


class _AsDict:
    def as_dict(self) -> dict[str, object]:
        """A JSON-able dict: ints stay ints, thresholds become strings like ">=2/3"."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ResolutionResult(_AsDict):
    """The outcome of one resolution item."""

    item_id: str
    kind: str
    outstanding_shares: int
    present_shares: int
    recused_shares: int
    denominator: int
    for_votes: int
    against_votes: int
    abstain_votes: int
    not_voted: int
    quorum_met: bool
    quorum_required: Threshold
    majority_required: Threshold
    rule: str
    adopted: bool


@dataclass(frozen=True)
class CandidateResult(_AsDict):
    """One candidate's cumulative votes."""

    candidate_id: str
    votes: int
    elected: bool


@dataclass(frozen=True)
class ElectionResult(_AsDict):
    """The outcome of one election item, candidates ranked by votes (ties in notice order)."""

    item_id: str
    kind: str
    seats: int
    outstanding_shares: int
    present_shares: int
    recused_shares: int
    quorum_met: bool
    quorum_required: Threshold
    rule: str
    votes_available: int
    votes_cast: int
    void_ballots: int
    candidates: tuple[CandidateResult, ...]
    elected: tuple[str, ...]
    tie_for_last_seat: tuple[str, ...]
    seats_by_lot: int
    unfilled_seats: int


@dataclass(frozen=True)
class AttendanceFigures(_AsDict):
    """Holders and votable shares present in one mode."""

    holders: int
    shares: int


@dataclass(frozen=True)
class TallyResult(_AsDict):
    """The whole meeting's tally, items in agenda order."""

    outstanding_shares: int
    present_shares: int
    attendance: Mapping[str, AttendanceFigures]
    items: tuple[ResolutionResult | ElectionResult, ...]

    def item(self, item_id: str) -> ResolutionResult | ElectionResult:
        """The result of one agenda item."""
        for result in self.items:
            if result.item_id == item_id:
                return result
        raise KeyError(item_id)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able dict (ints stay ints)."""
        return {
            "outstanding_shares": self.outstanding_shares,
            "present_shares": self.present_shares,
            "attendance": {mode: figures.as_dict() for mode, figures in self.attendance.items()},
            "items": [result.as_dict() for result in self.items],
        }


def tally_meeting(
    register: Sequence[RegisterEntry],
    agenda: Sequence[AgendaItem],
    present: Sequence[PresentHolder],
    rules: MeetingRules,
    recusals: Mapping[str, Collection[str]] | None = None,
) -> TallyResult:
    """Tally every agenda item. ``recusals`` maps an item id to the holders recused on it.

    Raises ``TallyInputError`` when the inputs contradict each other (an unknown holder,
    item or candidate, a split from a non-nominee, a split beyond the holder's shares...).
    """
    holders = _index_register(register)
    items = {item.item_id: item for item in agenda}
    if len(items) != len(agenda):
        raise TallyInputError("an agenda item id appears twice")
    attendees = _check_attendance(present, holders, items)
    recusals = recusals or {}
    for item_id, recused in recusals.items():
        if item_id not in items:
            raise TallyInputError(f"recusal on unknown item {item_id!r}")
        if unknown := set(recused) - holders.keys():
            raise TallyInputError(f"recusal of holders not on the register: {sorted(unknown)}")

    # Each holder's votable shares once: a million holders are tallied item after item.
    votable = {holder_no: entry.shares - entry.non_voting_shares for holder_no, entry in holders.items()}
    outstanding = sum(votable.values())
    weighted = [(p, votable[p.holder_no]) for p in attendees]
    present_shares = sum(weight for _, weight in weighted)
    results: list[ResolutionResult | ElectionResult] = []
    for item in agenda:
        recused = frozenset(recusals.get(item.item_id, ()))
        voters = [(p, w) for p, w in weighted if p.holder_no not in recused] if recused else weighted
        recused_shares = present_shares - sum(weight for _, weight in voters) if recused else 0
        if item.is_election:
            results.append(_tally_election(item, voters, holders, rules, outstanding, present_shares, recused_shares))
        else:
            results.append(_tally_resolution(item, voters, holders, rules, outstanding, present_shares, recused_shares))
    attendance = {
        mode: AttendanceFigures(
            holders=sum(1 for p, _ in weighted if p.mode == mode),
            shares=sum(weight for p, weight in weighted if p.mode == mode),
        )
        for mode in ATTENDANCE_MODES
    }
    return TallyResult(outstanding, present_shares, MappingProxyType(attendance), tuple(results))


def _index_register(register: Sequence[RegisterEntry]) -> dict[str, RegisterEntry]:
    holders = {entry.holder_no: entry for entry in register}
    if len(holders) != len(register):
        raise TallyInputError("a holder appears twice on the register")
    return holders


def _check_attendance(
    present: Sequence[PresentHolder], holders: Mapping[str, RegisterEntry], items: Mapping[str, AgendaItem]
) -> list[PresentHolder]:
    seen: set[str] = set()
    for attendee in present:
        if attendee.holder_no not in holders:
            raise TallyInputError(f"present holder {attendee.holder_no!r} is not on the register")
        if attendee.holder_no in seen:
            raise TallyInputError(f"holder {attendee.holder_no!r} is present twice")
        if attendee.mode not in ATTENDANCE_MODES:
            raise TallyInputError(f"unknown attendance mode {attendee.mode!r}")
        if unknown := set(attendee.choices) - items.keys():
            raise TallyInputError(f"holder {attendee.holder_no!r} chose on unknown items {sorted(unknown)}")
        seen.add(attendee.holder_no)
    return list(present)


def _tally_resolution(
    item: AgendaItem,
    voters: Sequence[tuple[PresentHolder, int]],
    holders: Mapping[str, RegisterEntry],
    rules: MeetingRules,
    outstanding: int,
    present_shares: int,
    recused_shares: int,
) -> ResolutionResult:
    votes = dict.fromkeys(VOTE_CODES, 0)
    item_id, electronically_votable = item.item_id, item.electronically_votable
    for voter, weight in voters:
        if voter.mode == "evote" and not electronically_votable:
            # Art. 177-1: deemed to abstain, whatever the ballot might say.
            votes["ABST"] += weight
            continue
        choice = voter.choices.get(item_id, NO_ACTION)
        if isinstance(choice, str) and choice in votes:
            votes[choice] += weight
        elif isinstance(choice, SplitVote):
            entry = holders[voter.holder_no]
            if not entry.nominee:
                raise TallyInputError(f"holder {entry.holder_no!r} is not a nominee and cannot split votes")
            if choice.total > entry.votable_shares:
                raise TallyInputError(f"split of holder {entry.holder_no!r} on {item.item_id!r} exceeds their shares")
            votes["CFOR"] += choice.cfor
            votes["CAGS"] += choice.cags
            votes["ABST"] += choice.abst
        elif choice != NO_ACTION:
            raise TallyInputError(f"invalid choice {choice!r} of {voter.holder_no!r} on resolution {item.item_id!r}")
    denominator = present_shares - recused_shares
    decide = decide_special if item.kind == "special" else decide_ordinary
    decision = decide(rules, present_shares, outstanding, votes["CFOR"], denominator)
    return ResolutionResult(
        item_id=item.item_id,
        kind=item.kind,
        outstanding_shares=outstanding,
        present_shares=present_shares,
        recused_shares=recused_shares,
        denominator=denominator,
        for_votes=votes["CFOR"],
        against_votes=votes["CAGS"],
        abstain_votes=votes["ABST"],
        not_voted=denominator - sum(votes.values()),
        quorum_met=decision.quorum_met,
        quorum_required=decision.quorum_required,
        majority_required=decision.majority_required,
        rule=decision.rule,
        adopted=decision.adopted,
    )


def _tally_election(
    item: AgendaItem,
    voters: Sequence[tuple[PresentHolder, int]],
    holders: Mapping[str, RegisterEntry],
    rules: MeetingRules,
    outstanding: int,
    present_shares: int,
    recused_shares: int,
) -> ElectionResult:
    totals = dict.fromkeys(item.candidates, 0)
    votes_available = votes_cast = void_ballots = 0
    item_id, seats = item.item_id, item.seats
    for voter, weight in voters:
        limit = weight * seats
        votes_available += limit
        choice = voter.choices.get(item_id, NO_ACTION)
        if choice == NO_ACTION:
            continue
        if not isinstance(choice, ElectionVote):
            raise TallyInputError(f"invalid choice {choice!r} of {voter.holder_no!r} on election {item.item_id!r}")
        total = 0
        for candidate, votes in choice.allocations.items():
            if candidate not in totals:
                raise TallyInputError(f"votes for unknown candidate {candidate!r} on {item.item_id!r}")
            total += votes
        if total > limit:
            void_ballots += 1  # over-allocation voids this election on this ballot only
            continue
        votes_cast += total
        for candidate, votes in choice.allocations.items():
            totals[candidate] += votes

    # The meeting's ordinary quorum (Art. 174) governs an election too.
    quorum, from_articles = applied_threshold(MORE_THAN_HALF, as_threshold(rules.ordinary_quorum))
    quorum_met = quorum.met(present_shares, outstanding)
    notice_order = {candidate: i for i, candidate in enumerate(item.candidates)}
    ranked = sorted(item.candidates, key=lambda c: (-totals[c], notice_order[c]))
    elected, tied = _elect(ranked, totals, item.seats) if quorum_met else ((), ())
    seats_by_lot = item.seats - len(elected) if tied else 0
    return ElectionResult(
        item_id=item.item_id,
        kind=item.kind,
        seats=item.seats,
        outstanding_shares=outstanding,
        present_shares=present_shares,
        recused_shares=recused_shares,
        quorum_met=quorum_met,
        quorum_required=quorum,
        rule=("cumulative" if quorum_met else "election_no_quorum") + ("+articles" if from_articles else ""),
        votes_available=votes_available,
        votes_cast=votes_cast,
        void_ballots=void_ballots,
        candidates=tuple(CandidateResult(c, totals[c], c in elected) for c in ranked),
        elected=elected,
        tie_for_last_seat=tied,
        seats_by_lot=seats_by_lot,
        unfilled_seats=item.seats - len(elected) - seats_by_lot,
    )


def _elect(ranked: Sequence[str], totals: Mapping[str, int], seats: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The elected candidates and, on a tie for the last seat, the tied ones (left to lots).

    A candidate with no votes is never elected.
    """
    contenders = [c for c in ranked if totals[c] > 0]
    if len(contenders) <= seats:
        return tuple(contenders), ()
    last_seat_votes = totals[contenders[seats - 1]]
    if totals[contenders[seats]] != last_seat_votes:
        return tuple(contenders[:seats]), ()
    elected = tuple(c for c in contenders if totals[c] > last_seat_votes)
    tied = tuple(c for c in contenders if totals[c] == last_seat_votes)
    return elected, tied
