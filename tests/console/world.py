"""The console tests' world: two issuers with a meeting each, a broker under dual control,
and one staff account per role (passwords hashed with cheap argon2id parameters)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core import accounts
from core.auth import Actor, Role
from core.db import session_scope
from ra import service as ra_service
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_ballots import make_meeting
from voting.models import Meeting

PASSWORD = "correct-horse-battery-staple"
OPERATOR = Actor("root", Role.OPERATOR)
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STAFF = {  # username: (role, tenant)
    "hana": (Role.ISSUER_HOST, "2330"), "otto": (Role.ISSUER_HOST, "2317"),
    "olivia": (Role.RA_OFFICER, "B101"), "oscar": (Role.RA_OFFICER, "B101"), "bella": (Role.RA_OFFICER, "B102"),
    "root": (Role.OPERATOR, None), "ada": (Role.AUDITOR, None), "bo": (Role.BROKER_BACKOFFICE, "B101"),
}
HOLDERS = [("H001", NATIONAL_IDS[0], 1_234_567), ("H002", NATIONAL_IDS[1], 500_000), ("H003", NATIONAL_IDS[2], 265_433)]


@dataclass(frozen=True)
class World:
    meeting_id: int
    public_id: str
    other_meeting_id: int


def meeting_id(platform: Platform, public_id: str) -> int:
    with session_scope(platform.engine) as session:
        return session.execute(select(Meeting.id).where(Meeting.public_id == public_id)).scalar_one()


def build_world(platform: Platform, *, held_yesterday: bool = False) -> World:
    """Staff accounts, brokers B101 (dual control) and B102, and one meeting per issuer (voters
    enrol at B001, which the voting factories create)."""
    with session_scope(platform.engine) as session:
        for username, (role, tenant) in STAFF.items():
            accounts.create_staff_user(session, actor=OPERATOR, username=username, password=PASSWORD, role=role,
                                       tenant=tenant)
        ra_service.create_broker(session, actor=OPERATOR, code="B101", name="Yuanta Test", dual_control=True)
        ra_service.create_broker(session, actor=OPERATOR, code="B102", name="Fubon Test")
    public_id = make_meeting(platform, HOLDERS, held_yesterday=held_yesterday, title="2026 年股東常會",
                             issuer_name="台灣積體電路製造股份有限公司")
    other = make_meeting(platform, [("K001", NATIONAL_IDS[3], 1000)], issuer="2317", title="Hon Hai 2026 AGM")
    return World(meeting_id(platform, public_id), public_id, meeting_id(platform, other))


def csrf(client: TestClient) -> str:
    """The browser's CSRF token (a console page sets it)."""
    token = client.cookies.get("cs_csrf")
    if token is None:
        client.get("/console/sign-in")
        token = client.cookies.get("cs_csrf")
    assert token
    return token


def sign_in(client: TestClient, username: str) -> None:
    """Sign ``username`` in through the form, as a browser does."""
    response = client.post("/console/sign-in", data={"csrf_token": csrf(client), "username": username,
                                                     "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303, response.text


def page_text(html: str) -> str:
    """The visible text of a page, roughly (tags dropped)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def browser_for(app: FastAPI, username: str | None = None, **headers: str) -> TestClient:
    """A cookie-keeping client, signed in as ``username`` when one is named."""
    client = TestClient(app, headers=headers or None)
    if username is not None:
        sign_in(client, username)
    return client
