"""Who may open which console page: no session → sign-in, wrong role → 403 like the JSON API,
another tenant's meeting, enrolment or investor → 404. Plain HTTP (no browser)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from cloudseal.platform import Platform
from console import meetings, ops_pages, ra_pages, signin
from core.auth import Actor, Role
from core.db import session_scope
from ra import service as ra_service
from tests.console.world import World, browser_for, csrf, page_text
from tests.ra.factories import NATIONAL_IDS

PUBLIC = {("GET", "/console/sign-in"), ("POST", "/console/sign-in"), ("POST", "/console/sign-out"),
          ("GET", "/console/lang/{language}"), ("GET", "/console/static/{name}")}


def console_routes() -> list[tuple[str, str]]:
    """Every (method, path template) of the console's pages (mounted under /console)."""
    return sorted((method, "/console" + route.path) for pages in (signin, meetings, ra_pages, ops_pages)
                  for route in pages.router.routes if isinstance(route, APIRoute) for method in route.methods)


def concrete(path: str, world: World) -> str:
    values = {"meeting_id": world.meeting_id, "enrolment_id": 1, "investor_id": 1, "client_id": "bc_0",
              "action": "suspend"}
    return re.sub(r"\{(\w+)\}", lambda match: str(values[match.group(1)]), path)


def test_every_console_page_sends_a_browser_without_a_session_to_sign_in(app: FastAPI, world: World) -> None:
    routes = [route for route in console_routes() if route not in PUBLIC]
    assert len(routes) >= 25  # the pages of hosts, RA officers and operators are all here
    anonymous = browser_for(app)
    for method, path in routes:
        response = anonymous.request(method, concrete(path, world), follow_redirects=False)
        if path.endswith(".json"):
            assert response.status_code == 401 and response.json()["error"]["code"] == "sign_in_required", path
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/console/sign-in"), path
    assert anonymous.get("/console/meetings", follow_redirects=False).headers["location"] == \
        "/console/sign-in?next=%2Fconsole%2Fmeetings"


@pytest.mark.parametrize(("username", "forbidden", "allowed"), [
    ("olivia", ["/console/meetings", "/console/meetings/{meeting}", "/console/ops/ca", "/console/ops/audit",
                "/console/ops/brokers", "/console/ops/certificates"],
     ["/console/ra/enrolments", "/console/ra/investors", "/console/ra/enrolments/new"]),
    ("hana", ["/console/ra/enrolments", "/console/ra/investors", "/console/ops/ca", "/console/ops/audit",
              "/console/ops/brokers", "/console/ra/enrolments/new"],
     ["/console/meetings", "/console/meetings/{meeting}", "/console/meetings/{meeting}/live.json"]),
    ("ada", ["/console/ops/brokers", "/console/ops/audit", "/console/ra/enrolments", "/console/ra/enrolments/new"],
     ["/console/ops/ca", "/console/ops/certificates", "/console/meetings"]),
    ("bo", ["/console/meetings", "/console/ra/enrolments", "/console/ops/ca"], ["/console/none"]),
    ("root", [], ["/console/meetings", "/console/meetings/{meeting}", "/console/ra/enrolments",
                  "/console/ra/investors", "/console/ops/brokers", "/console/ops/ca",
                  "/console/ops/certificates", "/console/ops/audit"]),
])
def test_each_role_sees_its_pages_and_is_refused_the_others_with_403(
        app: FastAPI, world: World, username: str, forbidden: list[str], allowed: list[str]) -> None:
    staff = browser_for(app, username)
    for path in forbidden:
        response = staff.get(path.format(meeting=world.meeting_id))
        assert response.status_code == 403, (username, path, response.status_code)
        assert "Your role may not do this." in page_text(response.text) or response.json()
    for path in allowed:
        assert staff.get(path.format(meeting=world.meeting_id)).status_code == 200, (username, path)


def test_a_host_of_another_issuer_gets_404_for_every_page_and_action_of_the_meeting(
        app: FastAPI, world: World) -> None:
    other = browser_for(app, "otto")
    meeting = f"/console/meetings/{world.meeting_id}"
    assert "2026 年股東常會" not in other.get("/console/meetings").text
    for path in ("", "/live.json", "/exports/tally.csv", "/exports/ballots.csv", "/report.pdf", "/bundle.zip"):
        response = other.get(meeting + path)
        assert response.status_code == 404, path
        assert "2026" not in response.text and "H001" not in response.text
    for action, fields in (("freeze", {}), ("proxies", {"holder_no": "H001", "proxy_name": "Eve"}),
                           ("attendance", {"holder_no": "H001", "mode": "in_person"}),
                           ("items", {"key": "A1", "kind": "amendment", "title": "Mine"})):
        response = other.post(f"{meeting}/{action}", data={"csrf_token": csrf(other), "confirmed": "yes", **fields})
        assert response.status_code == 404, action
    assert other.get(f"/console/meetings/{world.other_meeting_id}").status_code == 200


def test_an_officer_of_another_broker_gets_404_for_the_enrolment_and_the_investor(
        app: FastAPI, world: World, platform: Platform) -> None:
    with session_scope(platform.engine) as session:
        submitted = ra_service.submit_enrolment(
            session, platform.keystore, actor=Actor("olivia", Role.RA_OFFICER, "B101"), broker_code=None,
            id_kind="national_id", id_number=NATIONAL_IDS[5], name="Wu Li", birth_date=None,
            contact_channel="sms:+886900000009", accounts=["77-1"], proofing="branch")
        enrolment_id = submitted.id
    with session_scope(platform.engine) as session:
        ra_service.approve_enrolment(session, actor=Actor("oscar", Role.RA_OFFICER, "B101"),
                                            enrolment_id=enrolment_id or 0)
    outsider = browser_for(app, "bella")
    refused = outsider.post(f"/console/ra/enrolments/{enrolment_id}/reject",
                            data={"csrf_token": csrf(outsider), "reason": "not mine", "confirmed": "yes"})
    assert refused.status_code == 404 and "There is no such enrolment." in page_text(refused.text)
    assert outsider.get("/console/ra/investors/1").status_code == 404
    assert "Wu Li" not in outsider.get("/console/ra/investors?q=77-1").text
    assert "Wu Li" in browser_for(app, "olivia").get("/console/ra/investors?q=77-1").text
