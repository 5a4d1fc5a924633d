"""Which e-ballots count: first received, revocation by the deadline, proxies (Art. 177-2)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from voting.calendar import TAIPEI, evoting_closes_at
from voting.rules import (
    ProxyRegistration,
    ReceivedBallot,
    Revocation,
    apply_evoting_rules,
    holder_voting_state,
)

CLOSES_AT = evoting_closes_at(date(2026, 6, 4))  # 2026-06-02 00:00 Taipei


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    """An instant in May/June 2026, Taipei time (days > 31 run into June)."""
    if day > 31:
        return datetime(2026, 6, day - 31, hour, minute, second, tzinfo=TAIPEI)
    return datetime(2026, 5, day, hour, minute, second, tzinfo=TAIPEI)


def ballot(ballot_id: str, received_at: datetime, holder_no: str = "H1") -> ReceivedBallot:
    return ReceivedBallot(ballot_id, holder_no, received_at)


def revoke(ballot_id: str, received_at: datetime, holder_no: str = "H1") -> Revocation:
    return Revocation(holder_no, ballot_id, received_at)


def outcome(ballots, revocations=(), proxies=()):
    return apply_evoting_rules(list(ballots), list(revocations), list(proxies), CLOSES_AT)


def test_first_ballot_received_counts_even_if_later_one_differs() -> None:
    result = outcome([ballot("b2", at(21)), ballot("b1", at(20))])
    assert result.ballot_status == {"b1": "counted", "b2": "superseded"}
    assert result.counted_ballot == {"H1": "b1"}
    assert result.holder_state == {"H1": "voted"}


def test_same_instant_is_broken_by_ballot_id() -> None:
    result = outcome([ballot("b-200", at(20)), ballot("b-100", at(20))])
    assert result.counted_ballot["H1"] == "b-100"
    assert result.ballot_status["b-200"] == "superseded"


def test_revoked_before_deadline_lets_next_ballot_count() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(22)), ballot("b3", at(23))],
        [revoke("b1", at(21))],
    )
    assert result.ballot_status == {"b1": "revoked", "b2": "counted", "b3": "superseded"}
    assert result.counted_ballot["H1"] == "b2"


def test_ballot_received_before_the_revocation_stays_superseded() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(21)), ballot("b3", at(23))],
        [revoke("b1", at(22))],
    )
    assert result.ballot_status == {"b1": "revoked", "b2": "superseded", "b3": "superseded"}
    assert result.counted_ballot["H1"] is None
    assert result.holder_state["H1"] == "revoked"


def test_ballot_at_the_same_instant_as_the_revocation_does_not_count() -> None:
    result = outcome([ballot("b1", at(20)), ballot("b2", at(22))], [revoke("b1", at(22))])
    assert result.ballot_status["b2"] == "superseded"


def test_later_ballot_needs_every_earlier_ballot_revoked() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(21)), ballot("b3", at(23))],
        [revoke("b1", at(22))],
    )
    assert result.ballot_status["b3"] == "superseded"
    both_revoked = outcome(
        [ballot("b1", at(20)), ballot("b2", at(21)), ballot("b3", at(23))],
        [revoke("b1", at(22)), revoke("b2", at(22, 10, 30))],
    )
    assert both_revoked.ballot_status == {"b1": "revoked", "b2": "revoked", "b3": "counted"}


def test_revoke_vote_revoke_vote_again() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(22)), ballot("b3", at(24))],
        [revoke("b1", at(21)), revoke("b2", at(23))],
    )
    assert result.counted_ballot["H1"] == "b3"


def test_revocation_without_new_ballot_leaves_holder_revoked() -> None:
    result = outcome([ballot("b1", at(20))], [revoke("b1", at(21))])
    assert result.counted_ballot["H1"] is None
    assert result.holder_state["H1"] == "revoked"


def test_late_revocation_leaves_evote_in_force() -> None:
    late = revoke("b1", CLOSES_AT)
    result = outcome([ballot("b1", at(20))], [late])
    assert result.ballot_status["b1"] == "counted"
    assert [(r.revocation, r.reason) for r in result.refused_revocations] == [(late, "late_revocation")]


def test_revocation_in_the_last_second_is_in_time() -> None:
    result = outcome([ballot("b1", at(20))], [revoke("b1", at(32, 23, 59, 59))])
    assert result.ballot_status["b1"] == "revoked"
    assert result.refused_revocations == ()


def test_ballot_at_or_after_closing_is_late_and_never_counts() -> None:
    result = outcome([ballot("b1", CLOSES_AT), ballot("b2", CLOSES_AT - timedelta(microseconds=1), "H2")])
    assert result.ballot_status == {"b1": "late", "b2": "counted"}
    assert result.counted_ballot == {"H1": None, "H2": "b2"}
    assert result.holder_state["H1"] == "not_voted"


def test_late_ballot_after_an_in_time_revocation_does_not_count() -> None:
    result = outcome([ballot("b1", at(20)), ballot("b2", CLOSES_AT + timedelta(hours=1))], [revoke("b1", at(21))])
    assert result.ballot_status == {"b1": "revoked", "b2": "late"}
    assert result.counted_ballot["H1"] is None


def test_proxy_overrides_evote() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(20), "H2")],
        proxies=[ProxyRegistration("H1", at(25))],
    )
    assert result.ballot_status == {"b1": "overridden_by_proxy", "b2": "counted"}
    assert result.counted_ballot == {"H1": None, "H2": "b2"}
    assert result.holder_state == {"H1": "overridden", "H2": "voted"}
    assert result.counted_ballot_ids() == {"b2"}


def test_proxy_without_evote_is_not_voted_electronically() -> None:
    result = outcome([], proxies=[ProxyRegistration("H3", at(25))])
    assert result.counted_ballot == {"H3": None}
    assert result.holder_state == {"H3": "not_voted"}


@pytest.mark.parametrize(
    ("revocation", "reason"),
    [
        (revoke("nope", at(21)), "unknown_ballot"),
        (revoke("b1", at(21), holder_no="H2"), "holder_mismatch"),
        (revoke("b1", at(19)), "revocation_precedes_ballot"),
    ],
)
def test_revocations_without_effect_are_reported(revocation: Revocation, reason: str) -> None:
    result = outcome([ballot("b1", at(20))], [revocation])
    assert result.ballot_status["b1"] == "counted"
    assert [r.reason for r in result.refused_revocations] == [reason]


def test_second_revocation_of_a_ballot_is_refused_and_the_first_one_dates_it() -> None:
    result = outcome(
        [ballot("b1", at(20)), ballot("b2", at(22))],
        [revoke("b1", at(23)), revoke("b1", at(21))],
    )
    assert result.ballot_status["b2"] == "counted"
    assert [(r.revocation.received_at, r.reason) for r in result.refused_revocations] == [(at(23), "already_revoked")]


def test_holders_are_independent() -> None:
    result = outcome([ballot("a1", at(20), "H1"), ballot("b1", at(21), "H2"), ballot("a2", at(22), "H1")])
    assert result.counted_ballot == {"H1": "a1", "H2": "b1"}


def test_holder_voting_state_for_one_holder() -> None:
    ballots = [ballot("b1", at(20)), ballot("c1", at(20), "H2")]
    revocations = [revoke("b1", at(21))]
    proxies = [ProxyRegistration("H2", at(22))]
    assert holder_voting_state("H1", ballots, revocations, proxies, CLOSES_AT) == "revoked"
    assert holder_voting_state("H2", ballots, revocations, proxies, CLOSES_AT) == "overridden"
    assert holder_voting_state("H9", ballots, revocations, proxies, CLOSES_AT) == "not_voted"
    assert holder_voting_state("H1", ballots, [], [], CLOSES_AT) == "voted"


def test_result_does_not_depend_on_input_order() -> None:
    ballots = [ballot("b1", at(20)), ballot("b2", at(22)), ballot("b3", at(23)), ballot("c1", at(21), "H2")]
    revocations = [revoke("b1", at(21)), revoke("c1", at(22), "H2")]
    forward = outcome(ballots, revocations)
    backward = outcome(reversed(ballots), reversed(revocations))
    assert forward == backward


def test_naive_times_and_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        outcome([ballot("b1", datetime(2026, 5, 20))])
    with pytest.raises(ValueError):
        outcome([ballot("b1", at(20)), ballot("b1", at(21))])
