"""The inbox the app polls: each kind of entry appears when it should, once, and is pushed."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core.db import session_scope
from mobile_api.inbox import Notification
from mobile_api.models import MobileNotification
from tests.mobile.factories import CHOICES, NATIONAL_IDS, PIN, close_window, freeze, new_investor, publish_meeting
from tests.ra.factories import officer


@dataclass
class RecordingPush:
    """A push provider that keeps what it was given."""

    sent: list[tuple[str, Notification]] = field(default_factory=list)

    def send(self, investor_reference: str, notification: Notification) -> None:
        self.sent.append((investor_reference, notification))

    def variants(self) -> list[str]:
        return [n.variant for _, n in self.sent]


def variants(items: list[dict]) -> list[str]:
    return [item["variant"] for item in items]


def test_a_new_meeting_my_receipt_and_the_published_result_arrive_once_and_are_pushed(
        client: TestClient, platform: Platform) -> None:
    push = RecordingPush()
    client.app.state.mobile_push = push  # type: ignore[attr-defined]
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    assert alice.inbox() == []
    public_id, meeting_id = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)], title="2026 AGM")
    (new,) = alice.inbox()
    assert (new["kind"], new["meeting"], new["title"]) == ("new_meeting", public_id, "New shareholders' meeting")
    assert "2026 AGM" in new["body"] and "(Taipei)" in new["body"]
    assert alice.inbox() == []  # nothing new since the last poll
    alice.vote(public_id, CHOICES, PIN)
    assert push.variants() == ["new_meeting", "receipt.ballot"]  # pushed when committed, before any poll
    assert variants(alice.inbox()) == ["receipt.ballot"]
    alice.revoke_vote(public_id, PIN)
    assert variants(alice.inbox()) == ["receipt.revocation"]
    close_window(platform, meeting_id)
    freeze(client, platform, meeting_id)
    (result,) = alice.inbox()
    assert (result["kind"], result["meeting"]) == ("result", public_id)
    assert push.variants()[-1] == "result" and {who for who, _ in push.sent} == {alice.investor_reference}


def test_the_deadline_reminder_comes_three_days_before_and_only_if_i_have_not_voted(
        client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    holders = [("H001", NATIONAL_IDS[0], 1000, 0)]
    soon, _ = publish_meeting(client, platform, holders, meeting_in_days=4, title="Closing in two days")
    voted, _ = publish_meeting(client, platform, holders, issuer="2317", meeting_in_days=4, title="Voted already")
    later, _ = publish_meeting(client, platform, holders, issuer="2454", meeting_in_days=6, title="Closing in four days")
    alice.vote(voted, CHOICES, PIN)
    entries = alice.inbox()
    reminders = [e["meeting"] for e in entries if e["kind"] == "deadline"]
    assert reminders == [soon]
    assert {e["meeting"] for e in entries if e["kind"] == "new_meeting"} == {soon, voted, later}
    assert alice.inbox() == []
    alice.vote(soon, CHOICES, PIN)
    assert [e["kind"] for e in alice.inbox()] == ["receipt"]


def test_certificate_changes_arrive_whoever_made_them(client: TestClient, platform: Platform) -> None:
    push = RecordingPush()
    client.app.state.mobile_push = push  # type: ignore[attr-defined]
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    investor_id = client.get("/ra/investors", params={"q": alice.investor_reference},
                             headers=officer(platform, "B001")).json()["items"][0]["investor_id"]
    assert client.post(f"/ra/investors/{investor_id}/suspend", headers=officer(platform, "B001")).status_code == 200
    assert alice.me()["certificate"]["status"] == "suspended"
    assert variants(alice.inbox()) == ["certificate.suspended"]
    assert client.post(f"/ra/investors/{investor_id}/resume", headers=officer(platform, "B001")).status_code == 200
    alice.renew_certificate(PIN)
    assert variants(alice.inbox()) == ["certificate.resumed", "certificate.renewed"]
    alice.revoke_certificate(PIN, reason="keyCompromise")
    assert push.variants()[-1] == "certificate.revoked"  # the token is dead: pushed, and kept in the inbox
    with session_scope(platform.engine) as session:
        kinds = session.execute(select(MobileNotification.seq, MobileNotification.kind)
                                .order_by(MobileNotification.seq)).all()
    assert [seq for seq, _ in kinds] == [1, 2, 3, 4] and {k for _, k in kinds} == {"certificate"}


def test_the_inbox_pages_and_speaks_chinese(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0], language="zh-TW")
    for issuer in ("2330", "2317", "2454"):
        publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)], issuer=issuer)
    first = client.get("/mobile/v1/inbox", params={"limit": 2}, headers=alice.headers()).json()
    assert [i["seq"] for i in first["items"]] == [1, 2] and first["has_more"]
    rest = client.get("/mobile/v1/inbox", params={"since": first["next_cursor"]}, headers=alice.headers()).json()
    assert [i["seq"] for i in rest["items"]] == [3] and not rest["has_more"]
    assert rest["items"][0]["title"] == "新的股東會" and "（臺北時間）" in rest["items"][0]["body"]
    again = client.get("/mobile/v1/inbox", params={"since": rest["next_cursor"]}, headers=alice.headers()).json()
    assert again["items"] == [] and again["next_cursor"] == rest["next_cursor"]
