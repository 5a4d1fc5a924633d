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


def votable_of(holder_no: str, shares: int, non_voting_shares: int) -> int:
    """A holder's shares that carry a vote (Art. 179 shares excluded); ``TallyInputError``
    unless ``0 <= non_voting_shares <= shares``, both ints."""
    if not is_count(shares) or not is_count(non_voting_shares) or non_voting_shares > shares:
        raise TallyInputError(f"holder {holder_no!r}: need 0 <= non_voting_shares <= shares (ints)")
    return shares - non_voting_shares


@dataclass(frozen=True)
class RegisterEntry:
    """A holder on the register at book closure."""

    holder_no: str
    shares: int
    non_voting_shares: int = 0
    nominee: bool = False

    def __post_init__(self) -> None:
        votable_of(self.holder_no, self.shares, self.non_voting_shares)

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


_ELECTION, _EVOTABLE_RESOLUTION, _ROOM_RESOLUTION = "election", "resolution", "room_resolution"


class TallyCounts:
    """The additive figures of a set of present holders: two sets add up, and a holder taken
    out subtracts exactly what they added. The service keeps the e-voters' counts as ballots
    arrive (so a live tally reads one row); :func:`tally_meeting` counts everyone at once.

    Per resolution: shares for/against/abstaining (``CFOR``/``CAGS``/``ABST``); per election:
    votes per candidate, votes cast and void ballots; per item: shares of present holders
    recused on it (and of those, the e-voters'); holders and shares present by mode.
    """

    def __init__(self) -> None:
        self.holders: dict[str, int] = dict.fromkeys(ATTENDANCE_MODES, 0)
        self.shares: dict[str, int] = dict.fromkeys(ATTENDANCE_MODES, 0)
        self.votes: dict[str, dict[str, int]] = {}
        self.cast: dict[str, int] = {}
        self.void: dict[str, int] = {}
        self.recused: dict[str, int] = {}
        self.recused_evote: dict[str, int] = {}
        self._planned: tuple[Mapping[str, AgendaItem], dict[str, str]] | None = None

    def add(self, agenda: Mapping[str, AgendaItem], voter: PresentHolder, weight: int, *, nominee: bool = False,
            recused: Collection[str] = (), sign: int = 1) -> None:
        """Count ``voter`` (votable shares ``weight``) in, or out with ``sign=-1``.

        ``recused`` names the items the voter is out of (Art. 178). An e-voter's choices on
        items that cannot be voted electronically are ignored: the decision deems them
        abstaining (Art. 177-1). Raises ``TallyInputError`` on a choice that does not fit.
        """
        mode = voter.mode
        self.holders[mode] += sign
        self.shares[mode] += sign * weight
        for item_id in recused:
            self.recused[item_id] = self.recused.get(item_id, 0) + sign * weight
            if mode == "evote":
                self.recused_evote[item_id] = self.recused_evote.get(item_id, 0) + sign * weight
        evote = mode == "evote"
        signed_weight = sign * weight
        plan = self._plan(agenda)
        all_votes = self.votes
        for item_id, choice in voter.choices.items():
            kind = plan[item_id]
            if kind is _EVOTABLE_RESOLUTION and type(choice) is str and item_id not in recused:
                votes = all_votes[item_id]
                if choice in votes:
                    votes[choice] += signed_weight  # the common case: one code for all the shares
                    continue
            if (evote and kind is _ROOM_RESOLUTION) or item_id in recused or choice == NO_ACTION:
                continue
            item, votes = agenda[item_id], all_votes[item_id]
            if kind is _ELECTION:
                self._add_election(item, voter.holder_no, choice, votes, weight * item.seats, sign)
            elif type(choice) is str and choice in votes:
                votes[choice] += signed_weight
            elif isinstance(choice, SplitVote):
                if not nominee:
                    raise TallyInputError(f"holder {voter.holder_no!r} is not a nominee and cannot split votes")
                if choice.total > weight:
                    raise TallyInputError(f"split of holder {voter.holder_no!r} on {item_id!r} exceeds their shares")
                votes["CFOR"] += sign * choice.cfor
                votes["CAGS"] += sign * choice.cags
                votes["ABST"] += sign * choice.abst
            else:
                raise TallyInputError(f"invalid choice {choice!r} of {voter.holder_no!r} on resolution {item_id!r}")

    def _plan(self, agenda: Mapping[str, AgendaItem]) -> dict[str, str]:
        """Each item's kind for counting (worked out once per agenda) and its zeroed figures."""
        if self._planned is not None and self._planned[0] is agenda:
            return self._planned[1]
        plan = {}
        for item_id, item in agenda.items():
            if item.is_election:
                plan[item_id] = _ELECTION
                self.votes.setdefault(item_id, dict.fromkeys(item.candidates, 0))
            else:
                plan[item_id] = _EVOTABLE_RESOLUTION if item.electronically_votable else _ROOM_RESOLUTION
                self.votes.setdefault(item_id, dict.fromkeys(VOTE_CODES, 0))
        self._planned = (agenda, plan)
        return plan

    def _add_election(self, item: AgendaItem, holder_no: str, choice: Choice, totals: dict[str, int], limit: int,
                      sign: int) -> None:
        if not isinstance(choice, ElectionVote):
            raise TallyInputError(f"invalid choice {choice!r} of {holder_no!r} on election {item.item_id!r}")
        item_id = item.item_id
        allocations = choice.allocations
        total = 0
        for candidate, votes in allocations.items():
            if candidate not in totals:
                raise TallyInputError(f"votes for unknown candidate {candidate!r} on {item_id!r}")
            total += votes
        if total > limit:
            self.void[item_id] = self.void.get(item_id, 0) + sign  # voids this election on this ballot only
            return
        self.cast[item_id] = self.cast.get(item_id, 0) + sign * total
        for candidate, votes in allocations.items():
            totals[candidate] += sign * votes

    def merge(self, other: TallyCounts) -> None:
        """Add ``other``'s figures to these."""
        for mode in ATTENDANCE_MODES:
            self.holders[mode] += other.holders[mode]
            self.shares[mode] += other.shares[mode]
        for item_id, votes in other.votes.items():
            mine = self.votes.setdefault(item_id, {})
            for key, value in votes.items():
                mine[key] = mine.get(key, 0) + value
        for mine_figures, theirs in ((self.cast, other.cast), (self.void, other.void), (self.recused, other.recused),
                                     (self.recused_evote, other.recused_evote)):
            for item_id, value in theirs.items():
                mine_figures[item_id] = mine_figures.get(item_id, 0) + value

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict (integers stay integers; Python's json keeps them exact)."""
        return {"holders": self.holders, "shares": self.shares, "votes": self.votes, "cast": self.cast,
                "void": self.void, "recused": self.recused, "recused_evote": self.recused_evote}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TallyCounts:
        """The counts :meth:`to_json` wrote."""
        counts = cls()
        for name in ("holders", "shares", "votes", "cast", "void", "recused", "recused_evote"):
            value = data[name]
            setattr(counts, name, {k: (dict(v) if isinstance(v, dict) else v) for k, v in value.items()})  # type: ignore[attr-defined]
        return counts


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
    items = _index_agenda(agenda)
    _check_attendance(present, holders, items)
    recused_items: dict[str, list[str]] = {}
    for item_id, recused in (recusals or {}).items():
        if item_id not in items:
            raise TallyInputError(f"recusal on unknown item {item_id!r}")
        if unknown := set(recused) - holders.keys():
            raise TallyInputError(f"recusal of holders not on the register: {sorted(unknown)}")
        for holder_no in recused:
            recused_items.setdefault(holder_no, []).append(item_id)
    counts = TallyCounts()
    add = counts.add
    for voter in present:
        entry = holders[voter.holder_no]
        add(items, voter, entry.shares - entry.non_voting_shares, nominee=entry.nominee,
            recused=recused_items.get(voter.holder_no, ()))
    outstanding = sum(entry.shares - entry.non_voting_shares for entry in register)
    return decide(agenda, counts, outstanding, rules)


def decide(agenda: Sequence[AgendaItem], counts: TallyCounts, outstanding: int, rules: MeetingRules) -> TallyResult:
    """The results of every item from the counts of everyone present and the outstanding shares."""
    present_shares = sum(counts.shares.values())
    results: list[ResolutionResult | ElectionResult] = []
    for item in agenda:
        recused_shares = counts.recused.get(item.item_id, 0)
        if item.is_election:
            results.append(_decide_election(item, counts, rules, outstanding, present_shares, recused_shares))
        else:
            results.append(_decide_resolution(item, counts, rules, outstanding, present_shares, recused_shares))
    attendance = {mode: AttendanceFigures(holders=counts.holders[mode], shares=counts.shares[mode])
                  for mode in ATTENDANCE_MODES}
    return TallyResult(outstanding, present_shares, MappingProxyType(attendance), tuple(results))


def _index_register(register: Sequence[RegisterEntry]) -> dict[str, RegisterEntry]:
    holders = {entry.holder_no: entry for entry in register}
    if len(holders) != len(register):
        raise TallyInputError("a holder appears twice on the register")
    return holders


def _index_agenda(agenda: Sequence[AgendaItem]) -> dict[str, AgendaItem]:
    items = {item.item_id: item for item in agenda}
    if len(items) != len(agenda):
        raise TallyInputError("an agenda item id appears twice")
    return items


def _check_attendance(
    present: Sequence[PresentHolder], holders: Mapping[str, RegisterEntry], items: Mapping[str, AgendaItem]
) -> None:
    seen: set[str] = set()
    item_ids = items.keys()
    for attendee in present:
        if attendee.holder_no not in holders:
            raise TallyInputError(f"present holder {attendee.holder_no!r} is not on the register")
        if attendee.holder_no in seen:
            raise TallyInputError(f"holder {attendee.holder_no!r} is present twice")
        if attendee.mode not in ATTENDANCE_MODES:
            raise TallyInputError(f"unknown attendance mode {attendee.mode!r}")
        if not attendee.choices.keys() <= item_ids:
            unknown = sorted(set(attendee.choices) - set(item_ids))
            raise TallyInputError(f"holder {attendee.holder_no!r} chose on unknown items {unknown}")
        seen.add(attendee.holder_no)


def _decide_resolution(
    item: AgendaItem,
    counts: TallyCounts,
    rules: MeetingRules,
    outstanding: int,
    present_shares: int,
    recused_shares: int,
) -> ResolutionResult:
    votes = dict.fromkeys(VOTE_CODES, 0)
    votes.update(counts.votes.get(item.item_id, {}))
    if not item.electronically_votable:
        # Art. 177-1: e-voters (those not recused on the item) are deemed to abstain.
        votes["ABST"] += counts.shares["evote"] - counts.recused_evote.get(item.item_id, 0)
    denominator = present_shares - recused_shares
    decide_item = decide_special if item.kind == "special" else decide_ordinary
    decision = decide_item(rules, present_shares, outstanding, votes["CFOR"], denominator)
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


def _decide_election(
    item: AgendaItem,
    counts: TallyCounts,
    rules: MeetingRules,
    outstanding: int,
    present_shares: int,
    recused_shares: int,
) -> ElectionResult:
    totals = dict.fromkeys(item.candidates, 0)
    totals.update(counts.votes.get(item.item_id, {}))
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
        votes_available=(present_shares - recused_shares) * item.seats,
        votes_cast=counts.cast.get(item.item_id, 0),
        void_ballots=counts.void.get(item.item_id, 0),
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
