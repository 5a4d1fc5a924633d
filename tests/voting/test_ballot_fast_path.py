"""POST /voting/ballots answers the same with and without the fast path in front of the
framework, and the fast path hands everything but a well-formed submission on untouched."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from cloudseal.app import create_app
from cloudseal.platform import Platform
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_ballots import make_meeting, signed, voter
from voting.ballot_http import BallotFastPath, CheckReader

JSON = {"Content-Type": "application/json"}


def _body(payload: bytes, cms: bytes) -> dict[str, str]:
    return {"payload": base64.b64encode(payload).decode(), "cms": base64.b64encode(cms).decode()}


@pytest.fixture
def clients(platform: Platform) -> Iterator[tuple[TestClient, TestClient]]:
    """The app as served (fast path first), and the same app with the framework route alone."""
    fast = create_app(platform=platform, background_refresh=False)
    plain = create_app(platform=platform, background_refresh=False)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not BallotFastPath]
    with TestClient(fast) as fast_client, TestClient(plain) as plain_client:
        yield fast_client, plain_client


def test_bad_submissions_get_the_same_answers_both_ways(platform: Platform,
                                                         clients: tuple[TestClient, TestClient]) -> None:
    meeting = make_meeting(platform, [("H000", NATIONAL_IDS[0], 100), ("H001", NATIONAL_IDS[1], 200)])
    alice = voter(platform, "H000", NATIONAL_IDS[0])
    payload, cms = signed(platform, alice, meeting)
    other_holder = _body(*signed(platform, alice, meeting, holder_no="H001"))
    good = _body(payload, cms)
    cases: list[tuple[bytes, dict[str, str]]] = [
        (b"{", JSON), (b"\xff\xfe", JSON), (b"[]", JSON), (b"null", JSON),
        (json.dumps(good).encode(), {"Content-Type": "text/plain"}),
        (json.dumps({"payload": good["payload"]}).encode(), JSON),
        (json.dumps({**good, "extra": 1}).encode(), JSON),
        (json.dumps({"payload": 1, "cms": good["cms"]}).encode(), JSON),
        (json.dumps({"payload": "", "cms": good["cms"]}).encode(), JSON),
        (json.dumps({"payload": "!!", "cms": "MIIB"}).encode(), JSON),  # not base64
        (json.dumps({"payload": good["payload"], "cms": "MA=="}).encode(), JSON),  # not a CMS
        (json.dumps(other_holder).encode(), JSON),  # signed by another holder's certificate
        (b" " * (platform.settings.max_body_bytes + 1), JSON),
    ]
    fast, plain = clients
    for content, headers in cases:
        one, two = fast.post("/voting/ballots", content=content, headers=headers), \
            plain.post("/voting/ballots", content=content, headers=headers)
        assert 400 <= one.status_code < 500, (content[:60], one.text)
        assert (one.status_code, one.json()) == (two.status_code, two.json()), content[:60]
    # Sent chunked (no Content-Length): a valid submission padded past the limit, and one JSON
    # value nested too deep for the parser.
    padded = json.dumps(good).encode() + b" " * platform.settings.max_body_bytes
    nested = b"[" * 100_000 + b"]" * 100_000
    for content in (padded, nested):
        one, two = [client.post("/voting/ballots", content=iter([content[:70_000], content[70_000:]]), headers=JSON)
                    for client in clients]
        assert one.status_code in (400, 413), one.text
        assert (one.status_code, one.json()) == (two.status_code, two.json())
    # Content-Type given twice (the framework reads the first), an absurd Content-Length.
    for headers_list in ([("content-type", "text/plain"), ("content-type", "application/json")],
                         [("content-type", "application/json"), ("content-length", "9" * 5000)]):
        one, two = [client.post("/voting/ballots", content=json.dumps(good).encode(), headers=headers_list)
                    for client in clients]
        assert 400 <= one.status_code < 500, one.text
        assert (one.status_code, one.json()) == (two.status_code, two.json())
    accepted = fast.post("/voting/ballots", json=good)
    assert accepted.status_code == 201, accepted.text
    again_fast, again_plain = fast.post("/voting/ballots", json=good), plain.post("/voting/ballots", json=good)
    assert again_fast.status_code == 409 and again_fast.json()["error"]["code"] == "duplicate_ballot"
    assert (again_fast.status_code, again_fast.json()) == (again_plain.status_code, again_plain.json())
    second = plain.post("/voting/ballots", json=_body(*signed(platform, alice, meeting)))
    assert second.status_code == 201, second.text
    assert set(second.json()) == set(accepted.json()) == {"receipt", "signature", "seal_serial", "status"}
    assert (accepted.json()["status"], second.json()["status"]) == ("counted", "superseded")


def test_only_a_well_formed_submission_is_answered_by_the_fast_path(platform: Platform) -> None:
    """The layer in front of a stand-in app: a good ballot never reaches it; anything else
    reaches it with the body replayed byte for byte."""
    meeting = make_meeting(platform, [("H000", NATIONAL_IDS[0], 100)])
    app = create_app(platform=platform, background_refresh=False)
    seen: list[bytes] = []

    async def stand_in(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        seen.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    layer = BallotFastPath(stand_in, state=app.state, max_body_bytes=platform.settings.max_body_bytes)
    good = _body(*signed(platform, voter(platform, "H000", NATIONAL_IDS[0]), meeting))
    with TestClient(app), TestClient(layer) as client:  # the app's lifespan runs; requests go to the layer
        assert client.post("/voting/ballots", json=good).status_code == 201
        assert seen == []
        for content, headers in [(b'{"payload": 1}', JSON), (json.dumps(good).encode(), {"Content-Type": "text/csv"}),
                                 (b"x" * (platform.settings.max_body_bytes + 10), JSON)]:
            assert client.post("/voting/ballots", content=content, headers=headers).status_code == 299
            assert seen[-1] == content
        assert client.get("/voting/ballots").status_code == 299
        assert client.post("/voting/ballots/", json=good).status_code == 299
    assert len(seen) == 5


def test_the_checks_read_in_autocommit_and_give_the_pool_back_as_it_was(any_platform: Platform) -> None:
    """On PostgreSQL a ballot's checks read without BEGIN/ROLLBACK round trips; the pooled
    connection is back in transaction mode for the next user. On SQLite they use the
    read-only engine, which reads outside a transaction anyway."""
    engine = any_platform.check_engine
    assert engine is any_platform.check_engine
    if engine.dialect.name == "sqlite":
        assert engine is any_platform.read_engine
        return
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert connection.connection.driver_connection.autocommit is True  # type: ignore[union-attr]
    with any_platform.engine.connect() as connection:
        assert connection.connection.driver_connection.autocommit is False  # type: ignore[union-attr]


def test_the_checks_keep_one_connection_and_replace_a_broken_one(any_platform: Platform) -> None:
    meeting = make_meeting(any_platform, [("H000", NATIONAL_IDS[0], 100)])
    payload, cms = signed(any_platform, voter(any_platform, "H000", NATIONAL_IDS[0]), meeting)
    reader = CheckReader(any_platform.check_engine)
    try:
        assert reader.check(any_platform.pki, payload, cms).holder.holder_no == "H000"
        kept = reader._connection
        assert reader.check(any_platform.pki, payload, cms).holder.holder_no == "H000"
        assert reader._connection is kept
        if any_platform.engine.dialect.name != "postgresql":
            return
        pid = kept.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()  # type: ignore[union-attr]
        with any_platform.engine.begin() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one() is True
        assert reader.check(any_platform.pki, payload, cms).holder.holder_no == "H000"  # checked again
        assert reader._connection is not kept
    finally:
        reader.close()
