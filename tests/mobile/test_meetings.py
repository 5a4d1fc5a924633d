"""Meetings through the app: found by identity across issuers, upcoming and past, paginated,
my status on each, my votable shares and cumulative votes, several holder numbers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from core.errors import Conflict
from mobile_api.client import MobileApiError
from tests.mobile.factories import CHOICES, NATIONAL_IDS, PIN, host, new_investor, publish_meeting
from voting import attendance
from voting import ballots as voting_ballots
from voting.models import Holder


def test_upcoming_and_past_meetings_page_by_page(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    mine = [("H001", NATIONAL_IDS[0], 1000, 0)]
    soon, _ = publish_meeting(client, platform, mine, issuer="2330", meeting_in_days=5)
    later, _ = publish_meeting(client, platform, mine, issuer="2317", meeting_in_days=20)
    past, _ = publish_meeting(client, platform, mine, issuer="2454", meeting_in_days=-1)
    publish_meeting(client, platform, [("H009", NATIONAL_IDS[5], 50, 0)], issuer="1301")  # not hers
    first = alice.meetings(limit=1)
    assert [m["public_id"] for m in first["items"]] == [soon] and first["next_cursor"]
    second = alice.meetings(limit=1, cursor=first["next_cursor"])
    assert [m["public_id"] for m in second["items"]] == [later] and second["next_cursor"] is None
    assert [m["public_id"] for m in alice.meetings(when="past")["items"]] == [past]
    assert [m["public_id"] for m in alice.iter_meetings(when="all", page_size=2)] == [later, soon, past]
    gone = alice.meetings(when="past")["items"][0]
    assert gone["voting_open"] is False and gone["status"] == "not_voted"


def test_my_votable_shares_cumulative_votes_and_status_per_holder_number(client: TestClient,
                                                                        platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, meeting_id = publish_meeting(client, platform, [
        ("H001", NATIONAL_IDS[0], 1000, 250), ("H002", NATIONAL_IDS[0], 300, 0), ("H003", NATIONAL_IDS[1], 99, 0)])
    meeting = alice.meeting(public_id)
    assert meeting["votable_shares"] == "1050" and [h["holder_no"] for h in meeting["holdings"]] == ["H001", "H002"]
    assert [h["cumulative_votes"] for h in meeting["holdings"]] == [{"3": "1500"}, {"3": "600"}]
    assert next(i for i in meeting["agenda"] if i["key"] == "3")["cumulative_votes_available"] is None
    with pytest.raises(MobileApiError) as refused:
        alice.vote(public_id, {"1": "CFOR"}, PIN)
    assert refused.value.code == "holder_required"
    with pytest.raises(MobileApiError) as refused:
        alice.vote(public_id, {"1": "CFOR"}, PIN, holder_no="H003")
    assert (refused.value.status, refused.value.code) == (404, "unknown_holder")
    with pytest.raises(MobileApiError) as refused:
        alice.vote(public_id, {"3": {"allocations": {"C9": 1}}}, PIN, holder_no="H002")
    assert (refused.value.status, refused.value.code) == (400, "unknown_candidate")
    alice.vote(public_id, CHOICES, PIN, holder_no="H001")
    statuses = {h["holder_no"]: h["status"] for h in alice.meeting(public_id)["holdings"]}
    assert statuses == {"H001": "voted", "H002": "not_voted"} and alice.meeting(public_id)["status"] == "not_voted"
    alice.vote(public_id, {"1": "ABST"}, PIN, holder_no="H002")
    assert alice.meeting(public_id)["status"] == "voted"
    proxy = client.post(f"/voting/meetings/{meeting_id}/proxies", json={"holder_no": "H002", "proxy_name": "Lin"},
                        headers=host(platform))
    assert proxy.status_code == 201, proxy.text
    assert {h["holder_no"]: h["status"] for h in alice.meeting(public_id)["holdings"]}["H002"] == "overridden"
    assert alice.meeting(public_id)["status"] == "voted"  # H001 still counts


def test_an_over_allocated_election_is_the_voting_services_call(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    submitted = alice.vote(public_id, {"1": "CFOR", "3": {"allocations": {"C1": 2001}}}, PIN)
    assert submitted["status"] == "counted"
    assert alice.ballot(public_id, submitted["payload_sha256"])["voided_items"] == {"3": "void_over_allocation"}
    for choices, code in (({"9": "CFOR"}, "unknown_item"), ({"1": "MAYBE"}, "invalid_choice"),
                          ({"1": {"CFOR": 10}}, "split_not_allowed"), ({"1": 1.5}, "float_not_allowed")):
        with pytest.raises(MobileApiError) as refused:
            alice.prepare_ballot(public_id, choices)
        assert (refused.value.status, refused.value.code) == (400, code)


def test_the_window_deadline_and_votable_shares_are_the_voting_services(
        client: TestClient, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare answers early with the voting service's own rules, not copies of them."""
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 250)])
    asked: list[tuple[str, int]] = []
    real_votable_shares = voting_ballots.votable_shares

    def votable_shares(holder: Holder, rows: list) -> dict[str, int]:
        asked.append((holder.holder_no, len(rows)))
        return real_votable_shares(holder, rows)

    def refuse(code: str) -> Callable[..., None]:
        def rule(*_args: object) -> None:
            raise Conflict("the voting service says no", code=code)
        return rule

    monkeypatch.setattr(voting_ballots, "votable_shares", votable_shares)
    alice.prepare_ballot(public_id, {"3": {"allocations": {"C1": 1500}}})
    assert asked == [("H001", 3)]
    monkeypatch.setattr(voting_ballots, "check_open", refuse("window_rule"))
    monkeypatch.setattr(attendance, "check_revocation_open", refuse("deadline_rule"))
    for prepare, code in ((lambda: alice.prepare_ballot(public_id, CHOICES), "window_rule"),
                          (lambda: alice.prepare_revocation(public_id), "deadline_rule")):
        with pytest.raises(MobileApiError) as refused:
            prepare()
        assert (refused.value.status, refused.value.code) == (409, code)
