"""Console forms over plain HTTP: CSRF refusals, bad input as 4xx pages (never 5xx), the
confirmation step, sessions in cookies, languages, and the operators' and RA officers' forms."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core.db import session_scope
from core.models import ApiClient, RefreshToken
from ra.models import Enrolment
from tests.console.world import PASSWORD, World, browser_for, csrf, page_text
from tests.ra.factories import NATIONAL_IDS
from voting.models import Attendance, Meeting


def meeting_status(platform: Platform, meeting_id: int) -> str:
    with session_scope(platform.engine) as session:
        meeting = session.get(Meeting, meeting_id)
        assert meeting is not None
        return meeting.status


def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(
        app: FastAPI, world: World, platform: Platform) -> None:
    host = browser_for(app, "hana")
    freeze = f"/console/meetings/{world.meeting_id}/freeze"
    missing = host.post(freeze, data={"confirmed": "yes"})
    wrong = host.post(freeze, data={"confirmed": "yes", "csrf_token": "x" * 43})
    foreign = host.post(freeze, data={"confirmed": "yes", "csrf_token": csrf(host)},
                        headers={"Origin": "https://evil.example"})
    assert [r.status_code for r in (missing, wrong, foreign)] == [403, 403, 403]
    assert "security token is missing or stale" in page_text(missing.text)
    assert "csrf_origin" in foreign.text
    assert meeting_status(platform, world.meeting_id) == "published"
    anonymous = browser_for(app)
    refused = anonymous.post("/console/sign-in", data={"username": "hana", "password": PASSWORD})
    assert refused.status_code == 403 and "cs_refresh" not in anonymous.cookies


@pytest.mark.parametrize(("fields", "status", "shown"), [
    ({"holder_no": "H" * 5000, "mode": "in_person"}, 400, "longer than 32 characters"),
    ({"holder_no": "H002", "mode": "sideways"}, 422, "mode"),
    ({"holder_no": "H002", "mode": "in_person", "choice.1": "MAYB"}, 422, "one of CFOR, CAGS, ABST, NOAC"),
    ({"holder_no": "H002", "mode": "in_person", "votes.3.C1": "lots"}, 422, "a whole number of votes"),
    ({"holder_no": "H\x00002", "mode": "in_person"}, 400, "control characters"),
    ({"holder_no": "", "mode": "in_person"}, 400, "is required"),
    ({"holder_no": "H999", "mode": "in_person", "confirmed": "yes"}, 404, "No such holder"),
])
def test_malformed_room_entries_are_4xx_pages(app: FastAPI, world: World, fields: dict, status: int,
                                              shown: str) -> None:
    host = browser_for(app, "hana")
    response = host.post(f"/console/meetings/{world.meeting_id}/attendance",
                         data={"csrf_token": csrf(host), **fields})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html") and shown in page_text(response.text)


def test_oversize_repeated_and_non_form_bodies_are_4xx_never_5xx(app: FastAPI, world: World) -> None:
    host = browser_for(app, "hana")
    token = csrf(host)
    target = f"/console/meetings/{world.meeting_id}/proxies"
    big = host.post(target, data={"csrf_token": token, "holder_no": "H002", "proxy_name": "x" * 100_000})
    huge = host.post(target, content=b"a=" + b"x" * 2_000_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    repeated = host.post(target, content=f"csrf_token={token}&holder_no=H1&holder_no=H2&proxy_name=P".encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    as_json = host.post(target, json={"csrf_token": token, "holder_no": "H002"})
    broken = host.post(target, content=b"--nope\r\nContent-Disposition: form-data\r\n\r\n",
                       headers={"Content-Type": "multipart/form-data; boundary=other"})
    not_a_number = host.get("/console/meetings/abc")
    too_big = host.get("/console/meetings/99999999999")
    long_query = host.get("/console/ops/certificates?q=" + "a" * 500)
    statuses = [r.status_code for r in (big, huge, repeated, as_json, broken, not_a_number, too_big, long_query)]
    assert statuses == [413, 413, 400, 415, 400, 422, 422, 422]
    assert "The form is too large." in page_text(big.text) and "is repeated" in page_text(repeated.text)
    assert all(r.headers["content-type"].startswith("text/html") for r in (big, repeated, as_json, not_a_number))


def test_a_destructive_action_without_confirmation_shows_the_confirmation_page(
        app: FastAPI, world: World, platform: Platform) -> None:
    host = browser_for(app, "hana")
    target = f"/console/meetings/{world.meeting_id}/proxies"
    asked = host.post(target, data={"csrf_token": csrf(host), "holder_no": "H002", "proxy_name": "陳大文"})
    assert asked.status_code == 200 and "Register a proxy for holder H002?" in page_text(asked.text)
    assert 'name="proxy_name" value="陳大文"' in asked.text and 'name="confirmed" value="yes"' in asked.text
    with session_scope(platform.engine) as session:
        assert session.execute(select(Attendance)).first() is None
    done = host.post(target, data={"csrf_token": csrf(host), "holder_no": "H002", "proxy_name": "陳大文",
                                   "confirmed": "yes"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=proxy_registered")
    with session_scope(platform.engine) as session:
        assert session.execute(select(Attendance.mode)).scalar_one() == "proxy"
    assert "Proxy registered." in page_text(host.get(done.headers["location"]).text)


def test_freezing_seals_the_report_and_the_console_serves_it(app: FastAPI, world: World,
                                                             platform: Platform) -> None:
    host = browser_for(app, "hana")
    before = host.get(f"/console/meetings/{world.meeting_id}/report.pdf")
    assert before.status_code == 409 and "Available once the tally is frozen." in page_text(before.text)
    host.post(f"/console/meetings/{world.meeting_id}/freeze", data={"csrf_token": csrf(host), "confirmed": "yes"})
    assert meeting_status(platform, world.meeting_id) == "frozen"
    report = host.get(f"/console/meetings/{world.meeting_id}/report.pdf")
    assert report.status_code == 200 and report.content.startswith(b"%PDF")
    assert host.get(f"/console/meetings/{world.meeting_id}/bundle.zip").content.startswith(b"PK")
    tally = host.get(f"/console/meetings/{world.meeting_id}/exports/tally.csv")
    assert tally.headers["x-tally-status"] == "frozen" and tally.text.startswith("\ufeffitem,")
    again = host.post(f"/console/meetings/{world.meeting_id}/freeze", data={"csrf_token": csrf(host),
                                                                          "confirmed": "yes"})
    assert again.status_code == 409 and "meeting_not_published" in again.text


def test_sessions_live_in_strict_httponly_cookies_and_end_at_sign_out(app: FastAPI, world: World,
                                                                       platform: Platform) -> None:
    wrong = browser_for(app).post("/console/sign-in", data={"csrf_token": "", "username": "hana", "password": "no"})
    assert wrong.status_code == 403
    anonymous = browser_for(app)
    refused = anonymous.post("/console/sign-in", data={"csrf_token": csrf(anonymous), "username": "hana",
                                                       "password": "wrong-password!"})
    assert refused.status_code == 401 and "The username or password is wrong." in page_text(refused.text)
    host = browser_for(app)
    signed = host.post("/console/sign-in", data={"csrf_token": csrf(host), "username": "hana",
                                                 "password": PASSWORD, "next": "//evil.example/x"},
                       follow_redirects=False)
    assert signed.headers["location"] == "/console/meetings"
    cookies = [value for name, value in signed.headers.multi_items() if name == "set-cookie"]
    assert sorted(c.split("=")[0] for c in cookies) == ["cs_csrf", "cs_refresh"]  # no bearer JWT in a cookie
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert host.get("/console/meetings").status_code == 200
    stale_refresh = host.cookies.get("cs_refresh")
    host.post("/console/sign-out", data={"csrf_token": csrf(host)})
    with session_scope(platform.engine) as session:
        assert session.execute(select(RefreshToken.revoked_at)).scalar_one() is not None
    replay = browser_for(app)
    replay.cookies.set("cs_refresh", stale_refresh or "", path="/console")
    assert replay.get("/console/meetings", follow_redirects=False).status_code == 303
    over_https = TestClient(app, base_url="https://testserver")
    secure = over_https.post("/console/sign-in", data={"csrf_token": csrf(over_https), "username": "hana",
                                                       "password": PASSWORD}, follow_redirects=False)
    assert all("; secure" in value.lower() for name, value in secure.headers.multi_items() if name == "set-cookie")


def test_the_language_follows_the_browser_and_the_switch(app: FastAPI, world: World) -> None:
    chinese = browser_for(app, "hana", **{"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8"})
    page = chinese.get(f"/console/meetings/{world.meeting_id}")
    assert 'lang="zh-Hant-TW"' in page.text and "出席與投票概況" in page.text
    switched = chinese.get("/console/lang/en?next=/console/meetings", follow_redirects=False)
    assert switched.headers["location"] == "/console/meetings"
    assert "Shareholder meetings" in chinese.get("/console/meetings").text
    assert chinese.get("/console/lang/en?next=https://evil.example", follow_redirects=False).headers[
        "location"] == "/console"
    assert browser_for(app, "hana").get("/console/meetings").text.startswith("<!doctype html>\n<html lang=\"en\">")


def test_every_page_carries_a_strict_content_security_policy(app: FastAPI, world: World) -> None:
    host = browser_for(app, "hana")
    for path in (f"/console/meetings/{world.meeting_id}", "/console/sign-in", "/console/nowhere"):
        response = host.get(path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store" and response.headers["x-frame-options"] == "DENY"
    assert host.get("/console/nowhere").status_code == 404
    live = host.get(f"/console/meetings/{world.meeting_id}/live.json").json()
    assert live["tally"]["outstanding_shares"] == "2000000" and live["register_holders"] == 3
    assert [item["key"] for item in live["agenda"]] == ["1", "2", "3"]


def test_officers_enrol_and_approve_under_dual_control(app: FastAPI, world: World, platform: Platform) -> None:
    olivia, oscar = browser_for(app, "olivia"), browser_for(app, "oscar")
    form = {"id_kind": "national_id", "id_number": NATIONAL_IDS[6], "name": "張小芬", "birth_date": "1975-02-01",
            "contact_channel": "sms:+886911222333", "accounts": "5500-1\n5500-2", "proofing": "ID card in branch"}
    submitted = olivia.post("/console/ra/enrolments", data={"csrf_token": csrf(olivia), **form})
    assert submitted.status_code == 200 and "Enrolment submitted for approval." in page_text(submitted.text)
    with session_scope(platform.engine) as session:
        enrolment_id = session.execute(select(Enrolment.id).where(Enrolment.broker_code == "B101")).scalar_one()
    own = olivia.post(f"/console/ra/enrolments/{enrolment_id}/approve",
                      data={"csrf_token": csrf(olivia), "confirmed": "yes"})
    assert own.status_code == 403 and "cannot approve" in page_text(own.text)
    approved = oscar.post(f"/console/ra/enrolments/{enrolment_id}/approve",
                          data={"csrf_token": csrf(oscar), "confirmed": "yes"})
    assert "an activation code was sent" in page_text(approved.text)
    found = oscar.get("/console/ra/investors", params={"q": NATIONAL_IDS[6][:3] + "****" + NATIONAL_IDS[6][-3:]})
    assert "張小芬" in found.text and "1 found" in page_text(found.text)
    assert "張小芬" in oscar.get("/console/ra/investors", params={"q": "5500-2"}).text
    bad = olivia.post("/console/ra/enrolments", data={"csrf_token": csrf(olivia), **form, "id_number": "A123"})
    assert bad.status_code == 422 and "id_number" in page_text(bad.text)


def test_operators_manage_brokers_and_api_clients(app: FastAPI, world: World, platform: Platform) -> None:
    root = browser_for(app, "root")
    created = root.post("/console/ops/brokers", data={"csrf_token": csrf(root), "code": "b777", "name": "Capital"})
    assert "Broker created." in page_text(created.text) and "B777" in created.text
    client = root.post("/console/ops/clients", data={"csrf_token": csrf(root), "broker_code": "B777",
                                                     "name": "back office"})
    assert client.status_code == 201 and "shown this once" in page_text(client.text)
    with session_scope(platform.engine) as session:
        client_id = session.execute(select(ApiClient.client_id)).scalar_one()
    assert client_id in client.text
    unknown = root.post("/console/ops/clients", data={"csrf_token": csrf(root), "broker_code": "ZZ99", "name": "x"})
    assert unknown.status_code == 404
    revoked = root.post(f"/console/ops/clients/{client_id}/revoke", data={"csrf_token": csrf(root),
                                                                        "confirmed": "yes"})
    assert "API client revoked." in page_text(revoked.text)
    with session_scope(platform.engine) as session:
        assert session.execute(select(ApiClient.revoked_at)).scalar_one() is not None
    verified = root.get("/console/ops/audit", params={"verify": "true", "action": "api_client"})
    assert "Verified: all" in page_text(verified.text) and "api_client.revoke" in verified.text
    search = root.get("/console/ops/certificates", params={"q": "OCSP"})
    assert "ocsp_signer" in search.text
