"""Hostile input on every mobile endpoint: wrong types, huge and negative numbers, control
and bidi characters, lone surrogates, deep nesting, non-UTF-8 bodies, odd queries, paths
and headers. Every answer is below 500 and every refusal is the JSON envelope with a code.
A PIN never comes back in a response or goes into a log."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from cloudseal.app import create_app
from cloudseal.platform import Platform
from mobile_api.client import MobileApiError
from tests.mobile.factories import NATIONAL_IDS, PIN, new_investor, publish_meeting

VALUES: list[object] = [None, True, 0, -1, 2**53, 10**400, 1.5, 1e308, float("nan"), "", "\x00", "\u202e",
                        "\ud800", "𝕏" * 10, "a" * 5000, [], {}, [1], {"a": 1}, "%%%"]
RAW_BODIES = [b"", b"null", b"[]", b"1", b"NaN", b'{"a":1,"a":2}', b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000,
              b'{"x": 1' + b"0" * 5000 + b"}", b'{"choices": ' + b'{"a":' * 900 + b"1" + b"}" * 900 + b"}"]
NOT_JSON = [(b"\xff\xfe{\x00}", "non-UTF-8"), (b"[" * 5000 + b"]" * 5000, "nested too deep"),
            (b'{"pin": 1' + b"0" * 5000 + b"}", "a number too long to parse")]


def _dumps(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


class Probe:
    """Sends requests and keeps every answer that is a 5xx or a refusal without the envelope."""

    def __init__(self, client: TestClient) -> None:
        self.client, self.answers = client, 0
        self.bad: list[tuple[str, str, str, int, str]] = []

    def __call__(self, method: str, path: str, **kwargs: object) -> None:
        answer = self.client.request(method, "/mobile/v1" + path, **kwargs)  # type: ignore[arg-type]
        self.answers += 1
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
        if answer.status_code >= 500 or (answer.status_code >= 400 and not (
                isinstance(body, dict) and isinstance(body.get("error", {}).get("code"), str))):
            self.bad.append((method, path, str(kwargs)[:120], answer.status_code, answer.text[:200]))


@pytest.fixture
def probe(platform: Platform) -> Iterator[tuple[TestClient, Probe]]:
    """A client that returns a 500 instead of raising, and a :class:`Probe` on it."""
    app = create_app(platform=platform, background_refresh=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, Probe(client)


def test_no_input_makes_the_mobile_api_answer_5xx_or_without_a_code(
        platform: Platform, probe: tuple[TestClient, Probe]) -> None:
    client, hit = probe
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    prepared = alice.prepare_ballot(public_id, {"1": "CFOR"})
    auth = alice.headers()
    proof = {"challenge_id": "ab12", "device_signature": "MEU="}
    posts = [
        ("/activation/redeem", {}, {"activation_id": "ab", "code": "X", "device_public_key": "MFkw",
                                    "device_signature": "MEU=", "pin": PIN}),
        ("/auth/challenge", {}, {"credential_id": alice.credential_id}),
        ("/auth/login", {}, {"credential_id": alice.credential_id, **proof}),
        ("/auth/refresh", {}, {"refresh_token": "nope"}),
        ("/me/pin", auth, {**proof, "old_pin": "111119", "new_pin": "739164"}),
        ("/me/revoke", auth, {**proof, "pin": "111119", "reason": "keyCompromise"}),
        ("/me/renew", auth, {**proof, "pin": "111119"}),
        (f"/meetings/{public_id}/ballots/prepare", auth, {"choices": {"1": "CFOR"}}),
        (f"/meetings/{public_id}/revocation/prepare", auth, {}),
        (f"/submissions/{prepared.submission_id}", auth, {"pin": "111119", "device_signature": "MEU="}),
    ]
    for path, headers, body in posts:
        json_headers = {**headers, "Content-Type": "application/json"}
        for field in [*body, "holder_no"]:
            for value in VALUES:
                hit("POST", path, content=_dumps({**body, field: value}), headers=json_headers)
        for raw in RAW_BODIES:
            hit("POST", path, content=raw, headers=json_headers)
        hit("POST", path, content=_dumps(body), headers={**headers, "Content-Type": "text/plain"})
    choices = [{"1": v} for v in VALUES] + [{"3": {"allocations": {"C1": v}}} for v in VALUES] + [
        {"3": {"allocations": v}} for v in VALUES] + [{"1": {"CFOR": v}} for v in VALUES] + [
        {key: "CFOR"} for key in ("", "\x00", "a" * 300, "𝕏")] + [
        {"3": {"allocations": {f"C{i}": 1 for i in range(1000)}}}, {str(i): "CFOR" for i in range(100)}]
    for choice in choices:
        hit("POST", f"/meetings/{public_id}/ballots/prepare", content=_dumps({"choices": choice}),
            headers={**auth, "Content-Type": "application/json"})
    cursors = [base64.urlsafe_b64encode(text.encode()).decode() for text in ("o:999999999", "o:-1", "o:１２", "o:²")]
    queries = [{"limit": "0"}, {"limit": str(10**30)}, {"limit": "1e3"}, {"limit": ["1", "2"]}, {"when": "\x00"},
               {"cursor": "a" * 1000}, {"meeting": "\u202e"}, *({"cursor": c} for c in cursors),
               *({"since": c} for c in cursors)]
    gets = ["/me", "/me/devices", "/inbox", "/meetings", "/ballots", "/receipts", f"/meetings/{public_id}",
            f"/meetings/{public_id}/result", f"/meetings/{public_id}/ballots/{'a' * 64}",
            f"/meetings/{public_id}/ballots/{'a' * 64}/proof", "/pki"]
    for path in gets:
        for query in queries:
            hit("GET", path, params=query, headers=auth)
        for language in ("zh;q=2", "*", "en;q=abc", ",,,,", "x" * 4000, "\t"):
            hit("GET", path, headers={**auth, "Accept-Language": language})
    for path in ("/meetings/%F0%9F%98%80", "/me/devices/" + "A" * 64, "/submissions/" + "a" * 33,
                 "/meetings/" + "a" * 5000, "/meetings/%2e%2e", f"/meetings/{public_id}%00"):
        hit("GET", path, headers=auth)
        hit("POST", path, json={}, headers=auth)
    token = auth["Authorization"].split()[1]
    for header in ("Bearer ", "bearer " + token, "Bearer " + "a" * 5000, f"Bearer {token} extra", "Bearer e30.e30.",
                   "Token x"):
        hit("GET", "/me", headers={"Authorization": header})
    assert hit.answers > 1000
    assert hit.bad == []


@pytest.mark.parametrize(("content", "why"), NOT_JSON, ids=[why for _, why in NOT_JSON])
def test_a_body_that_cannot_be_parsed_is_malformed_json(probe: tuple[TestClient, Probe], content: bytes,
                                                        why: str) -> None:
    client, _ = probe
    answer = client.post("/mobile/v1/auth/refresh", content=content, headers={"Content-Type": "application/json",
                                                                                "Accept-Language": "zh-TW"})
    assert answer.status_code == 400, why
    assert answer.json()["error"] == {"code": "malformed_json", "message": "請求內容不是有效的 JSON。"}


def test_no_pin_in_responses_exceptions_or_logs(client: TestClient, platform: Platform,
                                               caplog: pytest.LogCaptureFixture) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    seen: list[str] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        seen.append(response.text)

    client.event_hooks["response"].append(keep)
    caplog.set_level(logging.DEBUG)
    wrong, too_long, refusals = "739164", "7391648" * 6, []
    for attempt in (lambda: alice.vote(public_id, {"1": "CFOR"}, wrong), lambda: alice.change_pin(wrong, "918273"),
                    lambda: alice.renew_certificate(wrong), lambda: alice.revoke_certificate(wrong),
                    lambda: alice.vote(public_id, {"1": "CFOR"}, too_long), lambda: alice.change_pin(PIN, too_long)):
        with pytest.raises(MobileApiError) as refused:
            attempt()
        refusals.append(refused.value)
    assert [r.code for r in refusals] == ["wrong_pin"] * 4 + ["validation_error"] * 2
    assert alice.me()["certificate"]["pin_tries_left"] == 1
    for pin in (wrong, too_long, PIN):
        assert not any(pin in text for text in seen)
        assert not any(pin in f"{r} {r.details}" for r in refusals)
        assert pin not in caplog.text
