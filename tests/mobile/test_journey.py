"""The shareholder's whole journey over HTTP, through the reference client only: from the
activation code to a verified receipt and, after the meeting, a verified counted proof."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cloudseal.app import create_app
from cloudseal.platform import Platform
from mobile_api.client import MobileApiError
from tests.mobile.factories import CHOICES, NATIONAL_IDS, PIN, close_window, freeze, new_investor, publish_meeting


def test_from_activation_code_to_a_counted_ballot_proven_by_the_app(any_platform: Platform) -> None:
    with TestClient(create_app(platform=any_platform, background_refresh=False)) as client:
        alice = new_investor(client, any_platform, NATIONAL_IDS[0])
        public_id, meeting_id = publish_meeting(client, any_platform, [("H001", NATIONAL_IDS[0], 1000, 100),
                                                                       ("H002", NATIONAL_IDS[1], 500, 0)])
        me = alice.me()
        assert me["certificate"]["status"] == "active" and me["certificate"]["certificate_status"] == "good"
        assert [b["broker_code"] for b in me["brokers"]] == ["B001"] and me["devices"][0]["current"]

        (listed,) = alice.meetings()["items"]
        assert (listed["public_id"], listed["status"], listed["votable_shares"]) == (public_id, "not_voted", "900")
        detail = alice.meeting(public_id)
        election = next(item for item in detail["agenda"] if item["key"] == "3")
        assert election["cumulative_votes_available"] == "1800"
        assert [c["key"] for c in election["candidates"]] == ["C1", "C2", "C3"]

        first = alice.vote(public_id, CHOICES, PIN)  # the receipt is checked by the client
        assert first["status"] == "counted" and first["receipt"]["receipt"]["leaf_index"] == 0
        assert alice.meeting(public_id)["status"] == "voted"
        revoked = alice.revoke_vote(public_id, PIN)
        assert revoked["revoked_ballots"] == 1 and alice.meeting(public_id)["status"] == "revoked"
        second = alice.vote(public_id, {"1": "CAGS", "3": {"allocations": {"C3": 1800}}}, PIN)
        assert second["status"] == "counted"

        ballots = alice.ballots(meeting=public_id)["items"]
        assert [b["status"] for b in ballots] == ["counted", "revoked"]
        assert all(b["receipt"] is not None for b in ballots)
        assert len(alice.receipts()["items"]) == 3
        kinds = [n["kind"] for n in alice.inbox()]
        assert kinds.count("receipt") == 3 and "new_meeting" in kinds

        for early in (lambda: alice.verify_counted(public_id, second["payload_sha256"]), lambda: alice.result(public_id)):
            with pytest.raises(MobileApiError) as refused:
                early()
            assert (refused.value.status, refused.value.code) == (409, "tally_not_final")
        close_window(any_platform, meeting_id)
        freeze(client, any_platform, meeting_id)
        counted = alice.verify_counted(public_id, second["payload_sha256"])
        assert counted.counted and counted.tree_size == 3
        not_counted = alice.verify_counted(public_id, first["payload_sha256"])
        assert not not_counted.counted and not_counted.status == "revoked"
        assert alice.ballot(public_id, first["payload_sha256"])["receipt"] == first["receipt"]
        result = alice.result(public_id)
        assert result["result"]["items"][0]["item_id"] == "1"
        assert "result" in [n["kind"] for n in alice.inbox()]
