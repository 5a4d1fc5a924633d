"""A console session ends on the server at once: disabling the account, signing out or
signing in again in the same browser leaves nothing usable in the browser's cookies."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core import accounts
from core.db import session_scope
from tests.console.world import OPERATOR, PASSWORD, World, browser_for, csrf
from voting.models import Attendance


def replay(app: FastAPI, cookies: dict[str, str]) -> TestClient:
    """Another browser holding a copy of ``cookies`` (stolen, or kept from before)."""
    client = TestClient(app)
    for name, value in cookies.items():
        client.cookies.set(name, value, path="/console")
    return client


def assert_signed_out(client: TestClient, world: World) -> None:
    page = client.get("/console/meetings", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
    live = client.get(f"/console/meetings/{world.meeting_id}/live.json")
    assert live.status_code == 401 and live.json()["error"]["code"] == "sign_in_required"


def test_disabling_an_account_ends_its_console_session_at_the_next_request(
        app: FastAPI, world: World, platform: Platform) -> None:
    host = browser_for(app, "hana")
    token = csrf(host)
    assert host.get("/console/meetings").status_code == 200
    with session_scope(platform.engine) as session:
        accounts.deactivate_staff_user(session, actor=OPERATOR, username="hana")
    assert_signed_out(host, world)
    refused = host.post(f"/console/meetings/{world.meeting_id}/proxies", follow_redirects=False,
                        data={"csrf_token": token, "holder_no": "H002", "proxy_name": "Eve", "confirmed": "yes"})
    assert refused.status_code == 303 and refused.headers["location"] == "/console/sign-in"
    with session_scope(platform.engine) as session:
        assert session.execute(select(Attendance)).first() is None


def test_cookies_copied_before_sign_out_open_nothing_afterwards(app: FastAPI, world: World) -> None:
    host = browser_for(app, "hana")
    copied = dict(host.cookies.items())
    assert replay(app, copied).get("/console/meetings").status_code == 200
    host.post("/console/sign-out", data={"csrf_token": csrf(host)})
    assert_signed_out(replay(app, copied), world)


def test_signing_in_again_in_the_same_browser_revokes_the_session_it_held(app: FastAPI, world: World) -> None:
    shared = browser_for(app, "hana")
    copied = dict(shared.cookies.items())
    shared.post("/console/sign-in", data={"csrf_token": csrf(shared), "username": "otto",
                                          "password": PASSWORD})
    assert shared.get(f"/console/meetings/{world.other_meeting_id}").status_code == 200
    assert_signed_out(replay(app, copied), world)


def test_the_console_address_without_a_slash_goes_home_directly(app: FastAPI, world: World) -> None:
    host = browser_for(app, "hana")
    response = host.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/meetings"
    assert "content-security-policy" in response.headers
    anonymous = browser_for(app).get("/console", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/sign-in")
