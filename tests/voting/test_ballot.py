"""Ballot payload: canonical JSON envelope and choices checked against the agenda."""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785

from voting import ballot as ballot_module
from voting.agenda import AgendaItem, ElectionVote, SplitVote
from voting.ballot import (
    BALLOT_TYPE,
    Ballot,
    BallotError,
    ballot_digest,
    build_ballot,
    check_choices,
    decode_choices,
    new_nonce,
    parse_ballot,
)

NONCE = "q1w2e3r4t5y6u7i8o9p0_-"
CREATED = datetime(2026, 6, 1, 3, 4, 5, tzinfo=UTC)


def make_agenda(seats: int = 2) -> list[AgendaItem]:
    return [
        AgendaItem("1", "acknowledgement", "2025 business report and financial statements"),
        AgendaItem("2", "ordinary", "Distribution of 2025 earnings"),
        AgendaItem("3", "special", "Amendment of the articles of incorporation", article="277"),
        AgendaItem("4", "election", "Election of directors", seats=seats, candidates=("c1", "c2", "c3")),
        AgendaItem("5", "extempore", "Extempore motion"),
        AgendaItem("6", "amendment", "Amendment to item 2"),
    ]


def document(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "type": BALLOT_TYPE,
        "meeting": "M-2330-2026",
        "holder": "000123",
        "choices": {"1": "CFOR"},
        "nonce": NONCE,
        "created_at": "2026-06-01T03:04:05Z",
    }
    doc.update(overrides)
    return doc


def ballot_with(choices: dict[str, object]):
    return parse_ballot(rfc8785.dumps(document(choices=choices)))


def check(choices: dict[str, object], *, nominee: bool = False, shares: int = 1_000, seats: int = 2):
    agenda = make_agenda(seats)
    return check_choices(
        ballot_with(choices), agenda, nominee=nominee, votable_shares={item.item_id: shares for item in agenda}
    )


def refused_code(payload: bytes) -> str:
    with pytest.raises(BallotError) as refused:
        parse_ballot(payload)
    return refused.value.code


def test_build_gives_canonical_bytes_that_parse_back() -> None:
    payload = build_ballot(
        "M-2330-2026",
        "000123",
        {"2": "CAGS", "1": "CFOR", "4": ElectionVote({"c2": 500, "c1": 1500}), "3": SplitVote(cfor=10, abst=5)},
        NONCE,
        CREATED + timedelta(microseconds=999),
    )
    assert payload == rfc8785.dumps(json.loads(payload))
    assert payload.startswith(b'{"choices":{"1":"CFOR","2":"CAGS","3":{"ABST":5,"CFOR":10},"4":{"allocations"')
    ballot = parse_ballot(payload)
    assert (ballot.meeting_id, ballot.holder_no, ballot.nonce) == ("M-2330-2026", "000123", NONCE)
    assert ballot.created_at == CREATED
    assert ballot.digest == ballot_digest(payload)
    assert len(ballot.digest) == 32


def test_build_refuses_naive_time_and_huge_integers() -> None:
    with pytest.raises(BallotError) as naive:
        build_ballot("M", "H", {"1": "CFOR"}, NONCE, datetime(2026, 6, 1))
    assert naive.value.code == "invalid_time"
    with pytest.raises(BallotError) as huge:
        build_ballot("M", "H", {"3": {"CFOR": 2**53}}, NONCE, CREATED)
    assert huge.value.code == "integer_out_of_range"


def test_build_converts_times_to_utc() -> None:
    taipei = timezone(timedelta(hours=8))
    payload = build_ballot("M", "H", {}, NONCE, datetime(2026, 6, 1, 11, 4, 5, tzinfo=taipei))
    assert b'"created_at":"2026-06-01T03:04:05Z"' in payload


def test_new_nonce_is_acceptable() -> None:
    assert parse_ballot(rfc8785.dumps(document(nonce=new_nonce()))).nonce


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"type":"\xff"}', "not_utf8"),
        (b"{not json", "not_json"),
        (b'{"a":NaN}', "not_json"),
        (b'{"choices":{},"choices":{}}', "duplicate_key"),
        (b'{"a":1.5}', "float_not_allowed"),
        (b'{"a":1.0}', "float_not_allowed"),
        (b'{"a":1e3}', "float_not_allowed"),
        (b'{"a":9007199254740992}', "integer_out_of_range"),
        (b'{"a":"\\ud800"}', "not_canonical"),
        (b"[1,2]", "not_object"),
    ],
)
def test_malformed_bytes_are_refused(payload: bytes, code: str) -> None:
    assert refused_code(payload) == code


def test_non_canonical_bytes_are_refused() -> None:
    canonical = rfc8785.dumps(document())
    assert parse_ballot(canonical).holder_no == "000123"
    pretty = json.dumps(document(), indent=2).encode()
    unsorted = json.dumps(dict(reversed(list(document().items()))), separators=(",", ":")).encode()
    escaped = canonical.replace(b'"000123"', b'"\\u0030\\u0030\\u0030123"')
    for variant in (pretty, unsorted, canonical + b"\n", b" " + canonical, escaped):
        assert refused_code(variant) == "not_canonical"


def _outcome(payload: bytes) -> object:
    try:
        return parse_ballot(payload)
    except BallotError as refusal:
        return refusal.code


def test_the_quick_reading_changes_no_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """Edits of a good ballot give the same ballot or the same refusal code with the C
    parser's quick reading as with the careful reading alone."""
    rng = random.Random(177)
    good = build_ballot("M1", "000123", {"1": "CFOR", "2": SplitVote(3, 2, 0), "4": ElectionVote({"c1": 12})},
                        NONCE, CREATED)
    alphabet = b'{}[]",:0123456789-.eE \\uACFOR\x00\xc3\xa9'
    variants = [good]
    for _ in range(3000):
        edited = bytearray(good)
        at = rng.randrange(len(edited))
        if rng.randrange(2):
            edited[at] = rng.choice(alphabet)
        else:
            edited[at:at] = bytes([rng.choice(alphabet)])
        variants.append(bytes(edited))
    quick = [_outcome(variant) for variant in variants]
    monkeypatch.setattr(ballot_module, "read_plain_canonical", lambda payload: None)
    careful = [_outcome(variant) for variant in variants]
    assert quick == careful
    assert sum(isinstance(outcome, Ballot) for outcome in careful) > 100  # edits inside strings still parse
    assert len({outcome for outcome in careful if isinstance(outcome, str)}) >= 5  # and several refusals


def _nested_ballot(depth: int) -> bytes:
    nested = b'{"k":' * depth + b"1" + b"}" * depth
    return (b'{"choices":{"1":' + nested + b'},"created_at":"2026-06-01T03:04:05Z","holder":"H001",'
            b'"meeting":"M1","nonce":"abcdefghijklmnop","type":"cloudseal.ballot/1"}')


def test_deep_nesting_reads_the_same_both_ways_and_never_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every depth up to past where the interpreter runs out of stack: one outcome both ways,
    a ballot or a refusal code (the C parser reads deeper than the encoder writes)."""
    depths = [10, 62, 63, *range(sys.getrecursionlimit() - 400, sys.getrecursionlimit() + 20), 5000, 100_000]
    quick = [_outcome(_nested_ballot(depth)) for depth in depths]
    monkeypatch.setattr(ballot_module, "read_plain_canonical", lambda payload: None)
    assert quick == [_outcome(_nested_ballot(depth)) for depth in depths]
    assert all(isinstance(outcome, Ballot) for outcome in quick[:3]) and quick[-2:] == ["not_json"] * 2


def test_utf8_bom_is_not_json() -> None:
    assert refused_code(b"\xef\xbb\xbf" + rfc8785.dumps(document())) == "not_json"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"type": "cloudseal.ballot/2"}, "wrong_type"),
        ({"extra": 1}, "unexpected_field"),
        ({"meeting": ""}, "invalid_field"),
        ({"holder": 123}, "invalid_field"),
        ({"choices": ["CFOR"]}, "invalid_field"),
        ({"choices": {"": "CFOR"}}, "invalid_field"),
        ({"nonce": "short"}, "invalid_nonce"),
        ({"nonce": "a" * 65}, "invalid_nonce"),
        ({"nonce": "abc+def/ghijklmnopq"}, "invalid_nonce"),
        ({"nonce": "abcdefghijklmnop=="}, "invalid_nonce"),
        ({"created_at": "2026-06-01T03:04:05+08:00"}, "invalid_time"),
        ({"created_at": "2026-06-01T03:04:05.123Z"}, "invalid_time"),
        ({"created_at": "2026-06-31T03:04:05Z"}, "invalid_time"),
        ({"created_at": "2026-06-01T24:00:00Z"}, "invalid_time"),
        ({"created_at": 1780283045}, "invalid_time"),
    ],
)
def test_bad_envelopes_are_refused(overrides: dict[str, object], code: str) -> None:
    assert refused_code(rfc8785.dumps(document(**overrides))) == code


def test_created_at_reads_the_same_in_ascii_and_in_other_unicode_digits() -> None:
    # Ballots stored before the ASCII fast path may carry other digits: they still read.
    ascii_doc = document(created_at="2026-06-01T03:04:05Z")
    arabic_indic = document(created_at="\u0662\u0660\u0662\u0666-06-01T03:04:05Z")
    expected = datetime(2026, 6, 1, 3, 4, 5, tzinfo=UTC)
    assert parse_ballot(rfc8785.dumps(ascii_doc)).created_at == expected
    assert parse_ballot(rfc8785.dumps(arabic_indic)).created_at == expected


@pytest.mark.parametrize("name", ["type", "meeting", "holder", "choices", "nonce", "created_at"])
def test_every_field_is_required(name: str) -> None:
    doc = document()
    del doc[name]
    assert refused_code(rfc8785.dumps(doc)) == "missing_field"


def test_plain_choices_are_ok_and_items_left_out_are_not_voted() -> None:
    statuses = check({"1": "CFOR", "2": "CAGS", "3": "ABST"})
    assert statuses == {"1": "ok", "2": "ok", "3": "ok"}


def refused_choice(choices: dict[str, object], **kwargs: object) -> str:
    with pytest.raises(BallotError) as refused:
        check(choices, **kwargs)  # type: ignore[arg-type]
    return refused.value.code


def test_unknown_item_is_refused() -> None:
    assert refused_choice({"99": "CFOR"}) == "unknown_item"


@pytest.mark.parametrize("item_id", ["5", "6"])
def test_extempore_and_amendment_items_are_not_votable_electronically(item_id: str) -> None:
    assert refused_choice({item_id: "CFOR"}) == "item_not_votable"


@pytest.mark.parametrize(
    "choice", ["YES", "NOAC", "cfor", 1, None, True, {"CFOR": -1}, {"FOR": 1}, {"CFOR": True}, {"allocations": {}}]
)
def test_invalid_resolution_choice_is_refused(choice: object) -> None:
    assert refused_choice({"2": choice}, nominee=True) == "invalid_choice"


def test_split_vote_needs_a_nominee_holder() -> None:
    assert refused_choice({"2": {"CFOR": 600, "CAGS": 400}}, nominee=False) == "split_not_allowed"


def test_nominee_may_split_up_to_their_shares_and_leave_the_rest_unvoted() -> None:
    assert check({"2": {"CFOR": 600, "CAGS": 400}, "3": {"ABST": 1}}, nominee=True) == {"2": "ok", "3": "ok"}
    assert check({"2": {}}, nominee=True) == {"2": "ok"}
    assert refused_choice({"2": {"CFOR": 600, "CAGS": 401}}, nominee=True) == "split_exceeds_shares"


def test_election_with_unknown_candidate_is_refused() -> None:
    assert refused_choice({"4": {"allocations": {"c9": 1}}}) == "unknown_candidate"


@pytest.mark.parametrize(
    "choice",
    ["CFOR", {"CFOR": 1}, {"allocations": {"c1": -1}}, {"allocations": {"c1": True}}, {"allocations": []},
     {"allocations": {}, "extra": 1}],
)
def test_invalid_election_choice_is_refused(choice: object) -> None:
    assert refused_choice({"4": choice}) == "invalid_choice"


def test_election_may_concentrate_all_cumulative_votes() -> None:
    assert check({"4": {"allocations": {"c1": 2_000}}}, shares=1_000, seats=2) == {"4": "ok"}
    assert check({"4": {"allocations": {"c1": 1_000, "c2": 600, "c3": 400}}}, shares=1_000, seats=2) == {"4": "ok"}


def test_over_allocation_voids_only_that_election_on_that_ballot() -> None:
    statuses = check({"2": "CFOR", "4": {"allocations": {"c1": 1_500, "c2": 501}}}, shares=1_000, seats=2)
    assert statuses == {"2": "ok", "4": "void_over_allocation"}


def test_missing_votable_shares_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="votable shares"):
        check_choices(ballot_with({"4": {"allocations": {}}}), make_agenda(), nominee=False, votable_shares={})


def test_decode_choices_gives_typed_choices_for_the_tally() -> None:
    agenda = make_agenda()
    ballot = ballot_with({"1": "CFOR", "2": {"CAGS": 7}, "4": {"allocations": {"c1": 9_999}}})
    decoded = decode_choices(ballot, agenda, nominee=True, votable_shares={i.item_id: 10 for i in agenda})
    assert decoded == {"1": "CFOR", "2": SplitVote(cags=7), "4": ElectionVote({"c1": 9_999})}


def test_agenda_items_are_validated() -> None:
    with pytest.raises(ValueError):
        AgendaItem("1", "plebiscite", "?")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AgendaItem("1", "election", "Directors", seats=0, candidates=("a",))
    with pytest.raises(ValueError):
        AgendaItem("1", "ordinary", "Dividend", seats=1)
    assert not AgendaItem("9", "extempore", "Motion").electronically_votable
