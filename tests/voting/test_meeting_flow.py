"""A June 4 meeting end to end: signed-ballot payloads, the ballot log, the Art. 177-2 rules, the tally.

This is the path the offline auditor takes: from ballot bytes and recorded events alone to
every figure.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from voting.agenda import AgendaItem, ElectionVote
from voting.ballot import build_ballot, decode_choices, parse_ballot
from voting.calendar import TAIPEI, evoting_closes_at, evoting_opens_at, window_contains
from voting.merkle import MerkleFrontier, inclusion_proof, leaf_hash, root_hash, verify_inclusion
from voting.rules import ProxyRegistration, ReceivedBallot, Revocation, apply_evoting_rules
from voting.tally import PresentHolder, RegisterEntry, tally_meeting
from voting.thresholds import MeetingRules

MEETING = "M-1101-2026"
MEETING_DATE = date(2026, 6, 4)
OPENS_AT = evoting_opens_at(date(2026, 5, 5))
CLOSES_AT = evoting_closes_at(MEETING_DATE)

AGENDA = [
    AgendaItem("1", "acknowledgement", "2025 financial statements"),
    AgendaItem("2", "special", "Amendment of the articles of incorporation", article="277"),
    AgendaItem("3", "election", "Election of three directors", seats=3, candidates=("K1", "K2", "K3", "K4")),
    AgendaItem("4", "extempore", "Extempore motion"),
]
REGISTER = [
    RegisterEntry("H1", 30_000),
    RegisterEntry("H2", 20_000),
    RegisterEntry("H3", 15_000),
    RegisterEntry("H4", 10_000),
    RegisterEntry("H5", 10_000),
    RegisterEntry("H6", 5_000),
    RegisterEntry("TREASURY", 10_000, non_voting_shares=10_000),
]
SHARES = {entry.holder_no: entry.votable_shares for entry in REGISTER}


def taipei(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=TAIPEI)


def cast(holder_no: str, received_at: datetime, choices: dict[str, object]) -> tuple[ReceivedBallot, bytes]:
    payload = build_ballot(MEETING, holder_no, choices, f"nonce-{holder_no}-{received_at:%d%H%M%S}", received_at)
    ballot_id = parse_ballot(payload).digest.hex()
    return ReceivedBallot(ballot_id, holder_no, received_at), payload


def test_june_4_meeting_from_ballot_bytes_to_tally() -> None:
    assert CLOSES_AT == taipei(6, 2, 0)
    h1_first = cast("H1", taipei(5, 10, 9), {"1": "CFOR", "2": "CFOR", "3": ElectionVote({"K1": 90_000})})
    h1_second = cast("H1", taipei(5, 11, 9), {"1": "CAGS", "2": "CAGS"})  # recorded, not counted
    h2_first = cast("H2", taipei(5, 12, 9), {"1": "CAGS"})
    h2_after_revocation = cast("H2", taipei(5, 20, 9), {"1": "CFOR", "2": "CFOR", "3": ElectionVote({"K2": 60_000})})
    h3 = cast("H3", taipei(5, 13, 9), {"1": "CFOR", "2": "CAGS", "3": ElectionVote({"K3": 45_000})})
    h4 = cast("H4", taipei(5, 14, 9), {"1": "CFOR", "2": "CFOR"})  # then a proxy is registered
    h6_late = cast("H6", taipei(6, 2, 0, 0, 1), {"1": "CFOR"})
    recorded = [h1_first, h1_second, h2_first, h2_after_revocation, h3, h4, h6_late]
    revocations = [
        Revocation("H2", h2_first[0].ballot_id, taipei(5, 15, 9)),
        Revocation("H3", h3[0].ballot_id, taipei(6, 2, 8)),  # too late: the e-vote stands
    ]
    proxies = [ProxyRegistration("H4", taipei(5, 28, 17))]

    # The ballot log: every recorded ballot, in arrival order.
    in_order = sorted(recorded, key=lambda r: (r[0].received_at, r[0].ballot_id))
    log = MerkleFrontier()
    for received, payload in in_order:
        log.append(leaf_hash(payload))
    leaves = [leaf_hash(payload) for _, payload in in_order]
    assert log.root() == root_hash(leaves)

    outcome = apply_evoting_rules([r for r, _ in recorded], revocations, proxies, CLOSES_AT)
    assert outcome.ballot_status[h1_second[0].ballot_id] == "superseded"
    assert outcome.ballot_status[h2_first[0].ballot_id] == "revoked"
    assert outcome.ballot_status[h4[0].ballot_id] == "overridden_by_proxy"
    assert outcome.ballot_status[h6_late[0].ballot_id] == "late"
    assert not window_contains(h6_late[0].received_at, OPENS_AT, CLOSES_AT)
    assert [r.reason for r in outcome.refused_revocations] == ["late_revocation"]
    assert outcome.holder_state == {"H1": "voted", "H2": "voted", "H3": "voted", "H4": "overridden", "H6": "not_voted"}

    # A holder can be shown that their counted ballot is in the log.
    index = leaves.index(leaf_hash(h2_after_revocation[1]))
    proof = inclusion_proof(leaves, index, len(leaves))
    assert verify_inclusion(leaves[index], index, len(leaves), proof, log.root())

    payloads = {received.ballot_id: payload for received, payload in recorded}
    present = []
    for holder_no, ballot_id in sorted(outcome.counted_ballot.items()):
        if ballot_id is None:
            continue
        ballot = parse_ballot(payloads[ballot_id])
        votable = {item.item_id: SHARES[holder_no] for item in AGENDA}
        choices = decode_choices(ballot, AGENDA, nominee=False, votable_shares=votable)
        present.append(PresentHolder(holder_no, "evote", choices))
    # Entered by the host for the proxy and the holder in the room.
    present.append(PresentHolder("H4", "proxy", {"1": "CAGS", "2": "CAGS", "3": ElectionVote({"K4": 30_000}),
                                                 "4": "CFOR"}))
    present.append(PresentHolder("H5", "in_person", {"1": "CFOR", "2": "CFOR", "3": ElectionVote({"K1": 30_000}),
                                                     "4": "CAGS"}))

    result = tally_meeting(REGISTER, AGENDA, present, MeetingRules(public_company=True))
    assert (result.outstanding_shares, result.present_shares) == (90_000, 85_000)

    statements = result.item("1")  # H1 30k, H2 20k, H3 15k, H5 10k for; H4 10k against
    assert (statements.for_votes, statements.against_votes, statements.not_voted) == (75_000, 10_000, 0)
    assert statements.adopted

    articles = result.item("2")  # 85k of 90k present: the two-thirds quorum is met
    assert (articles.for_votes, articles.against_votes) == (60_000, 25_000)
    assert articles.rule == "special_two_thirds_present" and articles.adopted

    directors = result.item("3")
    assert [(c.candidate_id, c.votes) for c in directors.candidates] == [
        ("K1", 120_000), ("K2", 60_000), ("K3", 45_000), ("K4", 30_000)]
    assert directors.elected == ("K1", "K2", "K3")
    assert directors.votes_available == 85_000 * 3

    motion = result.item("4")  # e-voters (H1, H2, H3: 65k) deemed to abstain
    assert (motion.for_votes, motion.against_votes, motion.abstain_votes) == (10_000, 10_000, 65_000)
    assert not motion.adopted


def test_june_4_last_second_ballot_is_in_time() -> None:
    last_second = CLOSES_AT - timedelta(seconds=1)
    assert last_second.astimezone(TAIPEI).strftime("%Y-%m-%d %H:%M:%S") == "2026-06-01 23:59:59"
    received, _ = cast("H5", last_second, {"1": "CFOR"})
    outcome = apply_evoting_rules([received], [], [], CLOSES_AT)
    assert outcome.counted_ballot == {"H5": received.ballot_id}
