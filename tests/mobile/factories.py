"""Mobile test helpers: investors who hold the reference client, meetings set up over HTTP."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import update

from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope, utcnow
from mobile_api.client import MobileClient
from tests.conftest import bearer
from tests.ra.factories import NATIONAL_IDS, enrolment_body, latest_activation, officer
from voting.calendar import TAIPEI
from voting.models import Meeting

PIN = "482916"
ITEMS = [{"key": "1", "kind": "ordinary", "title": "2025 earnings distribution"},
         {"key": "2", "kind": "special", "title": "Amend the articles of incorporation", "article": "277"},
         {"key": "3", "kind": "election", "title": "Directors", "seats": 2,
          "candidates": [{"key": "C1", "name": "林"}, {"key": "C2", "name": "陳"}, {"key": "C3", "name": "王"}]}]
CHOICES = {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 1000, "C2": 800}}}
__all__ = ["NATIONAL_IDS", "PIN", "ITEMS", "CHOICES", "new_investor", "publish_meeting", "host", "close_window",
           "freeze"]


def host(platform: Platform, issuer: str = "2330") -> dict[str, str]:
    return bearer(platform, Role.ISSUER_HOST, subject=f"host-{issuer}", tenant=issuer)


def _broker(client: TestClient, platform: Platform, code: str) -> None:
    answer = client.post("/ra/brokers", json={"code": code, "name": f"Broker {code}"}, headers=bearer(platform))
    assert answer.status_code in (201, 409), answer.text


def activation_for(client: TestClient, platform: Platform, id_number: str, *, broker: str = "B001",
                   accounts: list[str] | None = None) -> dict[str, str]:
    """An RA officer enrols and approves the investor over HTTP; the code from the outbox."""
    _broker(client, platform, broker)
    headers = officer(platform, broker)
    submitted = client.post("/ra/enrolments", json=enrolment_body(id_number, accounts or [f"{id_number}-{broker}"]),
                            headers=headers)
    assert submitted.status_code == 201, submitted.text
    approved = client.post(f"/ra/enrolments/{submitted.json()['enrolment_id']}/approve", headers=headers)
    assert approved.status_code == 200, approved.text
    return latest_activation(platform)


def new_investor(client: TestClient, platform: Platform, id_number: str, *, broker: str = "B001",
                 language: str = "en") -> MobileClient:
    """An enrolled investor whose app redeemed the activation code (and is signed in)."""
    activation = activation_for(client, platform, id_number, broker=broker)
    app = MobileClient(client, language=language)
    app.activate(activation["activation_id"], activation["code"], PIN)
    return app


def publish_meeting(client: TestClient, platform: Platform, holders: list[tuple[str, str, int, int]], *,
                    issuer: str = "2330", meeting_in_days: int = 10, items: list[dict] | None = None,
                    title: str = "2026 AGM") -> tuple[str, int]:
    """A meeting published over HTTP with e-voting open now; (public id, id)."""
    answer = client.post("/voting/issuers", json={"code": issuer, "name": f"Issuer {issuer}"}, headers=bearer(platform))
    assert answer.status_code in (201, 409), answer.text
    today = dt.datetime.now(TAIPEI).date()
    created = client.post("/voting/meetings", headers=host(platform, issuer), json={
        "issuer_code": issuer, "title": title, "public_company": True, "items": items or ITEMS,
        "meeting_date": (today + dt.timedelta(days=meeting_in_days)).isoformat(),
        "book_closure_date": (today - dt.timedelta(days=2)).isoformat(),
        "notice_published_on": (today - dt.timedelta(days=5)).isoformat()})
    assert created.status_code == 201, created.text
    meeting = created.json()
    csv = "holder_no,id_number,name,shares,non_voting_shares,non_voting_reason,nominee\n" + "".join(
        f"{no},{id_number},Holder {no},{shares},{non_voting},{'treasury' if non_voting else ''},N\n"
        for no, id_number, shares, non_voting in holders)
    uploaded = client.put(f"/voting/meetings/{meeting['id']}/register", content=csv.encode(),
                          headers={**host(platform, issuer), "Content-Type": "text/csv"})
    assert uploaded.status_code == 200, uploaded.text
    published = client.post(f"/voting/meetings/{meeting['id']}/publish", headers=host(platform, issuer))
    assert published.status_code == 200, published.text
    return meeting["public_id"], meeting["id"]


def close_window(platform: Platform, meeting_id: int) -> None:
    """The clock passes the e-voting deadline (the meeting is under way)."""
    with session_scope(platform.engine) as session:
        session.execute(update(Meeting).where(Meeting.id == meeting_id).values(closes_at=utcnow()))


def freeze(client: TestClient, platform: Platform, meeting_id: int, issuer: str = "2330") -> None:
    """The host freezes the tally over HTTP (after the deadline)."""
    answer = client.post(f"/voting/meetings/{meeting_id}/freeze", headers=host(platform, issuer))
    assert answer.status_code == 200, answer.text
