"""The share-weighted tally: quorum, majorities, exclusions, split votes and cumulative elections."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from voting.agenda import AgendaItem, ElectionVote, SplitVote
from voting.tally import PresentHolder, RegisterEntry, TallyInputError, tally_meeting
from voting.thresholds import MeetingRules, more_than

PUBLIC = MeetingRules(public_company=True)
PRIVATE = MeetingRules(public_company=False)


def resolution(item_id: str = "r", kind: str = "ordinary") -> AgendaItem:
    return AgendaItem(item_id, kind, f"Resolution {item_id}")  # type: ignore[arg-type]


def election(seats: int = 2, candidates: tuple[str, ...] = ("X", "Y", "Z")) -> AgendaItem:
    return AgendaItem("e", "election", "Election of directors", seats=seats, candidates=candidates)


def register(**shares: int) -> list[RegisterEntry]:
    return [RegisterEntry(holder_no, n) for holder_no, n in shares.items()]


def vote(holder_no: str, mode: str = "in_person", **choices: object) -> PresentHolder:
    return PresentHolder(holder_no, mode, choices)  # type: ignore[arg-type]


def single(item: AgendaItem, holders: list[RegisterEntry], present: list[PresentHolder], rules=PUBLIC, **kw):
    return tally_meeting(holders, [item], present, rules, **kw).item(item.item_id)


def small_meeting():
    """10,000 votable shares outstanding; A, B and C (a nominee) present with 9,000."""
    holders = [
        RegisterEntry("A", 4_000),
        RegisterEntry("B", 3_000),
        RegisterEntry("C", 2_000, nominee=True),
        RegisterEntry("T", 1_000, non_voting_shares=1_000),  # held by a subsidiary (Art. 179)
        RegisterEntry("D", 1_000),
    ]
    agenda = [
        resolution("1", "acknowledgement"),
        resolution("2", "ordinary"),
        resolution("3", "special"),
        resolution("4", "extempore"),
        election(),
    ]
    present = [
        vote("A", "evote", **{"1": "CFOR", "2": "CAGS", "3": "CFOR", "e": ElectionVote({"X": 8_000})}),
        vote("B", "in_person", **{"1": "CAGS", "2": "CFOR", "3": "CAGS", "4": "CFOR",
                                  "e": ElectionVote({"Y": 3_000, "Z": 3_000})}),
        vote("C", "proxy", **{"1": SplitVote(cfor=1_500, cags=200), "2": "ABST", "3": "CAGS", "4": "CFOR",
                              "e": ElectionVote({"Z": 4_001})}),
    ]
    return tally_meeting(holders, agenda, present, PUBLIC, recusals={"2": {"A"}})


def test_small_meeting_hand_computed_figures() -> None:
    result = small_meeting()
    assert (result.outstanding_shares, result.present_shares) == (10_000, 9_000)
    assert {mode: (f.holders, f.shares) for mode, f in result.attendance.items()} == {
        "evote": (1, 4_000), "in_person": (1, 3_000), "proxy": (1, 2_000)}

    acknowledgement = result.item("1")
    assert (acknowledgement.for_votes, acknowledgement.against_votes, acknowledgement.abstain_votes,
            acknowledgement.not_voted, acknowledgement.denominator) == (5_500, 3_200, 0, 300, 9_000)
    assert acknowledgement.adopted and acknowledgement.rule == "ordinary"


def test_recused_holder_counts_for_quorum_but_not_in_the_item() -> None:
    ordinary = small_meeting().item("2")
    assert ordinary.present_shares == 9_000 and ordinary.quorum_met
    assert (ordinary.recused_shares, ordinary.denominator) == (4_000, 5_000)
    figures = (ordinary.for_votes, ordinary.against_votes, ordinary.abstain_votes, ordinary.not_voted)
    assert figures == (3_000, 0, 2_000, 0)
    assert ordinary.adopted


def test_special_resolution_short_of_a_majority_of_votes_present_fails() -> None:
    special = small_meeting().item("3")
    assert (special.for_votes, special.against_votes, special.denominator) == (4_000, 5_000, 9_000)
    assert special.rule == "special_two_thirds_present" and special.quorum_met and not special.adopted


def test_electronic_voter_abstains_on_extempore_motion() -> None:
    extempore = small_meeting().item("4")
    assert (extempore.for_votes, extempore.abstain_votes, extempore.denominator) == (5_000, 4_000, 9_000)
    assert extempore.adopted
    tight = single(
        resolution("x", "amendment"),
        register(A=5_000, B=4_000),
        [vote("A", "evote", x="CFOR"), vote("B", "in_person", x="CFOR")],
    )
    assert (tight.for_votes, tight.abstain_votes) == (4_000, 5_000)
    assert not tight.adopted


def test_election_tie_for_last_seat_is_reported_never_guessed() -> None:
    directors = small_meeting().item("e")
    assert [(c.candidate_id, c.votes) for c in directors.candidates] == [("X", 8_000), ("Y", 3_000), ("Z", 3_000)]
    assert directors.elected == ("X",)
    assert directors.tie_for_last_seat == ("Y", "Z")
    assert (directors.seats_by_lot, directors.unfilled_seats) == (1, 0)
    assert (directors.votes_available, directors.votes_cast, directors.void_ballots) == (18_000, 14_000, 1)


def test_over_allocation_voids_the_election_on_that_ballot_only() -> None:
    result = tally_meeting(
        register(A=100, B=100),
        [resolution("r"), election(seats=2)],
        [vote("A", r="CFOR", e=ElectionVote({"X": 150, "Y": 51})), vote("B", r="CFOR", e=ElectionVote({"Y": 200}))],
        PUBLIC,
    )
    assert result.item("r").for_votes == 200
    directors = result.item("e")
    assert directors.void_ballots == 1
    assert directors.elected == ("Y",) and directors.unfilled_seats == 1


def test_clear_election_fills_every_seat() -> None:
    directors = single(
        election(seats=2),
        register(A=100, B=60),
        [vote("A", e=ElectionVote({"X": 120, "Y": 80})), vote("B", e=ElectionVote({"Z": 119}))],
    )
    assert directors.elected == ("X", "Z")
    assert [c.elected for c in directors.candidates] == [True, True, False]
    assert directors.tie_for_last_seat == () and directors.rule == "cumulative"


def test_election_without_quorum_elects_nobody() -> None:
    directors = single(election(seats=1), register(A=50, B=50), [vote("A", e=ElectionVote({"X": 50}))])
    assert directors.rule == "election_no_quorum"
    assert directors.elected == () and directors.candidates[0].votes == 50


def test_art_179_shares_are_out_of_votes_and_outstanding() -> None:
    holders = [RegisterEntry("A", 1_000, non_voting_shares=400), RegisterEntry("B", 500)]
    result = single(resolution(), holders, [vote("A", r="CFOR")])
    assert (result.outstanding_shares, result.present_shares, result.for_votes) == (1_100, 600, 600)
    assert result.adopted


def test_split_votes_are_weighted_by_their_parts() -> None:
    holders = [RegisterEntry("N", 1_000, nominee=True), RegisterEntry("B", 200)]
    result = single(resolution(), holders, [vote("N", r=SplitVote(cfor=550, cags=300, abst=100)), vote("B")])
    assert (result.for_votes, result.against_votes, result.abstain_votes, result.not_voted) == (550, 300, 100, 250)
    assert not result.adopted  # 550 is not more than half of 1,200


def test_inconsistent_split_votes_are_refused() -> None:
    with pytest.raises(TallyInputError, match="nominee"):
        single(resolution(), register(A=10), [vote("A", r=SplitVote(cfor=5))])
    with pytest.raises(TallyInputError, match="exceeds"):
        single(resolution(), [RegisterEntry("N", 10, nominee=True)], [vote("N", r=SplitVote(cfor=11))])


def test_ordinary_needs_more_than_half_present_and_more_than_half_of_votes() -> None:
    at_half = single(resolution(), register(A=5_000, B=5_000), [vote("A", r="CFOR")])
    assert at_half.rule == "ordinary_no_quorum" and not at_half.quorum_met and not at_half.adopted
    half_for = single(resolution(), register(A=5_000, B=5_000, C=1), [vote("A", r="CFOR"), vote("B", r="CAGS")])
    assert half_for.quorum_met and not half_for.adopted
    assert half_for.not_voted == 0


def test_abstentions_and_unvoted_shares_count_against_adoption() -> None:
    result = single(resolution(), register(A=40, B=30, C=30), [vote("A", r="CFOR"), vote("B", r="ABST"), vote("C")])
    assert (result.for_votes, result.abstain_votes, result.not_voted, result.denominator) == (40, 30, 30, 100)
    assert not result.adopted


def test_special_resolution_with_two_thirds_present_needs_a_majority() -> None:
    holders = register(A=3_000, B=3_000, C=3_000)  # 6,000 of 9,000 is exactly two-thirds
    result = single(resolution(kind="special"), holders, [vote("A", r="CFOR"), vote("B", r="CAGS")])
    assert result.rule == "special_two_thirds_present" and result.quorum_met
    assert not result.adopted  # 3,000 is not more than half of 6,000
    passed = single(resolution(kind="special"), register(A=3_001, B=3_000, C=2_999),
                    [vote("A", r="CFOR"), vote("B", r="CAGS")])
    assert passed.adopted and passed.rule == "special_two_thirds_present"


def test_public_company_special_resolution_with_majority_present_needs_two_thirds() -> None:
    holders = register(A=4_000, B=2_000, C=4_000)  # 6,000 of 10,000 present: short of two-thirds
    adopted = single(resolution(kind="special"), holders, [vote("A", r="CFOR"), vote("B", r="CAGS")])
    assert adopted.rule == "special_public_majority_present" and adopted.adopted  # 4,000 is two-thirds of 6,000
    holders = register(A=3_999, B=2_001, C=4_000)
    refused = single(resolution(kind="special"), holders, [vote("A", r="CFOR"), vote("B", r="CAGS")])
    assert refused.rule == "special_public_majority_present" and not refused.adopted


def test_non_public_company_has_no_majority_present_branch() -> None:
    holders = register(A=4_000, B=2_000, C=4_000)
    result = single(resolution(kind="special"), holders, [vote("A", r="CFOR"), vote("B", r="CFOR")], PRIVATE)
    assert result.rule == "special_no_quorum" and not result.quorum_met and not result.adopted


def test_special_resolution_without_majority_present_has_no_quorum() -> None:
    result = single(resolution(kind="special"), register(A=5_000, B=5_000), [vote("A", r="CFOR")])
    assert result.rule == "special_no_quorum" and not result.adopted


def test_stricter_articles_prevail_and_are_named() -> None:
    rules = MeetingRules(public_company=True, ordinary_majority=Fraction(2, 3))
    holders = register(A=6_000, B=3_000, C=1_000)
    adopted = single(resolution(), holders, [vote("A", r="CFOR"), vote("B", r="CAGS")], rules)
    assert adopted.rule == "ordinary+articles" and adopted.adopted and str(adopted.majority_required) == ">=2/3"
    holders = register(A=5_999, B=3_001, C=1_000)
    refused = single(resolution(), holders, [vote("A", r="CFOR"), vote("B", r="CAGS")], rules)
    assert refused.rule == "ordinary+articles" and not refused.adopted


def test_stricter_special_quorum_from_articles() -> None:
    rules = MeetingRules(public_company=False, special_quorum=Fraction(3, 4))
    holders = register(A=7_000, B=3_000)
    result = single(resolution(kind="special"), holders, [vote("A", r="CFOR")], rules)
    assert result.rule == "special_no_quorum+articles" and not result.adopted
    public = MeetingRules(
        public_company=True, special_quorum=Fraction(3, 4), special_public_majority=more_than(Fraction(3, 4))
    )
    result = single(resolution(kind="special"), holders, [vote("A", r="CFOR")], public)
    assert result.rule == "special_public_majority_present+articles" and result.adopted


def test_laxer_articles_are_ignored() -> None:
    rules = MeetingRules(public_company=True, ordinary_quorum=Fraction(1, 3), ordinary_majority=Fraction(1, 2))
    result = single(resolution(), register(A=4_000, B=6_000), [vote("A", r="CFOR")], rules)
    assert result.rule == "ordinary_no_quorum" and str(result.quorum_required) == ">1/2"


def test_big_share_counts_stay_exact() -> None:
    holders = register(A=10**20 + 1, B=10**20)
    result = tally_meeting(holders, [resolution()], [vote("A", r="CFOR"), vote("B", r="CAGS")], PUBLIC)
    item = result.item("r")
    assert float(10**20 + 1) == float(10**20)  # what a float tally would have lost
    assert item.for_votes == 10**20 + 1 and item.against_votes == 10**20
    assert item.adopted
    encoded = json.loads(json.dumps(result.as_dict()))
    assert encoded["items"][0]["for_votes"] == 100_000_000_000_000_000_001
    assert encoded["present_shares"] == 2 * 10**20 + 1


def test_as_dict_is_json_with_int_figures() -> None:
    data = small_meeting().as_dict()
    assert json.loads(json.dumps(data)) == data
    directors = data["items"][4]
    assert directors["tie_for_last_seat"] == ["Y", "Z"]
    assert directors["candidates"][0] == {"candidate_id": "X", "votes": 8_000, "elected": True}
    assert data["items"][2]["quorum_required"] == ">=2/3"


@pytest.mark.parametrize(
    "present",
    [
        [vote("Z")],
        [vote("A"), vote("A")],
        [vote("A", "by_post")],
        [vote("A", nope="CFOR")],
        [vote("A", r="YES")],
        [vote("A", r=ElectionVote({"X": 1}))],
    ],
)
def test_inconsistent_inputs_are_refused(present: list[PresentHolder]) -> None:
    with pytest.raises(TallyInputError):
        tally_meeting(register(A=10), [resolution()], present, PUBLIC)


def test_election_inputs_are_checked() -> None:
    with pytest.raises(TallyInputError):
        single(election(), register(A=10), [vote("A", e="CFOR")])
    with pytest.raises(TallyInputError):
        single(election(), register(A=10), [vote("A", e=ElectionVote({"Q": 1}))])
    with pytest.raises(TallyInputError):
        tally_meeting(register(A=10), [election()], [], PUBLIC, recusals={"e": {"nobody"}})
