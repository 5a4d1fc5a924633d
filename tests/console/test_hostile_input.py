"""Hostile input over plain HTTP: every form post of a role that may not send it is refused,
random and malformed fields are 4xx (never 5xx), and markup typed into any field comes back
escaped on every page that shows it."""

from __future__ import annotations

import random
import re

import pytest
from fastapi import FastAPI

from cloudseal.platform import Platform
from tests.console.test_access import console_routes
from tests.console.world import World, browser_for, csrf, meeting_id
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_ballots import make_meeting
from voting.service import AgendaItemIn, CandidateIn

MARKUP = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>{0}{title}"
RAW = re.compile(r"<script>alert|<img src=x")
SESSION_ROUTES = ("/console/sign-in", "/console/sign-out")
FIELDS = ("holder_no", "mode", "proxy_name", "key", "kind", "title", "reason", "code", "name", "broker_code",
          "id_kind", "id_number", "birth_date", "contact_channel", "accounts", "proofing", "key_algorithm",
          "choice.1", "choice.2", "votes.3.C1", "votes.3.C2", "dual_control", "username", "password", "next")
VALUES = ("", " ", "0", "-1", "1" * 40, "9" * 400, "\u202e", "１２３", "\ufeff", "\x00", "\x7f", "a\r\nb", "%", "../..",
          "CFOR", "in_person", "amendment", "B101", "H001", "yes", "NaN", "1e9", "' OR 1=1 --", MARKUP, "x" * 1000)


def post_routes() -> list[str]:
    return [path for method, path in console_routes() if method == "POST" and path not in SESSION_ROUTES]


def fill(path: str, ids: dict[str, object]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: str(ids[match.group(1)]), path)


@pytest.mark.parametrize(("username", "allowed_prefixes"), [
    ("ada", ()), ("bo", ()), ("hana", ("/console/meetings/",)), ("olivia", ("/console/ra/",)),
])
def test_every_form_post_is_refused_to_a_role_that_may_not_send_it(
        app: FastAPI, world: World, username: str, allowed_prefixes: tuple[str, ...]) -> None:
    staff = browser_for(app, username)
    ids = {"meeting_id": world.meeting_id, "enrolment_id": 1, "investor_id": 1, "client_id": "bc_0",
           "action": "suspend"}
    routes = [path for path in post_routes() if not path.startswith(allowed_prefixes)]
    assert len(routes) >= 4
    for path in routes:
        response = staff.post(fill(path, ids), follow_redirects=False,
                              data={"csrf_token": csrf(staff), "confirmed": "yes", "code": "B999", "name": "Mine",
                                    "broker_code": "B101", "holder_no": "H001", "proxy_name": "Eve",
                                    "mode": "in_person", "key": "9", "kind": "amendment", "title": "Mine",
                                    "reason": "keyCompromise"})
        assert response.status_code == 403, (username, path, response.status_code)


def test_random_fields_on_every_form_are_4xx_pages_never_5xx(app: FastAPI, world: World) -> None:
    rng = random.Random(20260604)
    id_sets = ({"meeting_id": world.meeting_id, "enrolment_id": 1, "investor_id": 1, "client_id": "bc_0",
                "action": "revoke"},
               {"meeting_id": "0", "enrolment_id": "99999999999", "investor_id": "-5", "client_id": "%C3%A9",
                "action": "zap"})
    failures = []
    for username in ("root", "hana", "olivia", None):
        client = browser_for(app, username)
        token = csrf(client)
        routes = post_routes() if username else ["/console/sign-in"]
        for path in routes:
            for ids in id_sets:
                for _ in range(8):
                    data = {"csrf_token": token, **{name: rng.choice(VALUES)
                                                    for name in rng.sample(FIELDS, rng.randint(0, 8))}}
                    if rng.random() < 0.5:
                        data["confirmed"] = "yes"
                    response = client.post(fill(path, ids), data=data, follow_redirects=False)
                    if response.status_code >= 500:
                        failures.append((username, fill(path, ids), data, response.status_code))
    assert not failures, failures[:5]


def test_markup_in_any_field_is_escaped_on_every_page(app: FastAPI, world: World, platform: Platform) -> None:
    items = [AgendaItemIn("1", "ordinary", MARKUP),
             AgendaItemIn("3", "election", MARKUP, seats=1, candidates=(CandidateIn("C1", MARKUP), CandidateIn("C2", "B")))]
    hostile = meeting_id(platform, make_meeting(platform, [("H001", NATIONAL_IDS[0], 10)], held_yesterday=True,
                                                items=items, title=MARKUP))
    host, olivia, root = browser_for(app, "hana"), browser_for(app, "olivia"), browser_for(app, "root")
    base = f"/console/meetings/{hostile}"
    enrolment = {"id_kind": "national_id", "id_number": NATIONAL_IDS[7], "name": MARKUP,
                 "contact_channel": "sms:+886911000111", "accounts": "9100-1", "proofing": MARKUP}
    responses = [
        host.get("/console/meetings"), host.get(base),
        host.post(base + "/proxies", data={"csrf_token": csrf(host), "holder_no": "H001", "proxy_name": MARKUP}),
        host.post(base + "/proxies", data={"csrf_token": csrf(host), "holder_no": MARKUP, "proxy_name": MARKUP,
                                           "confirmed": "yes"}),
        host.post(base + "/freeze", data={"csrf_token": csrf(host)}),
        olivia.post("/console/ra/enrolments", data={"csrf_token": csrf(olivia), **enrolment}),
        olivia.post("/console/ra/enrolments/1/reject", data={"csrf_token": csrf(olivia), "reason": MARKUP}),
        olivia.get("/console/ra/investors", params={"q": MARKUP[:90]}),
        root.post(base + "/proxies", data={"csrf_token": csrf(root), "holder_no": "H001", "proxy_name": MARKUP,
                                           "confirmed": "yes"}),
        root.get("/console/ops/certificates", params={"q": MARKUP}),
        root.post("/console/ops/brokers", data={"csrf_token": csrf(root), "code": "B555", "name": MARKUP}),
        root.get("/console/sign-in", params={"next": "/console/" + MARKUP}), root.get("/console/ops/audit"),
    ]
    for response in responses:
        assert response.status_code < 500, response.request.url
        assert not RAW.search(response.text), (response.request.url, RAW.search(response.text))
    shown = "&lt;script&gt;alert(1)&lt;/script&gt;"  # the text is shown, as text
    for index in (0, 1, 2, 5, 10, 12):  # meetings, meeting, confirmation, queue, brokers, audit log
        assert shown in responses[index].text, responses[index].request.url
