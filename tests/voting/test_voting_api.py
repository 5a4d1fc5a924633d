"""The voting API over HTTP: tenancy, roles, bad input, ballots, receipts and public proofs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import select

from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope
from tests.conftest import bearer
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_ballots import make_meeting, signed, voter
from voting.ballots import log_entry
from voting.calendar import TAIPEI
from voting.models import BallotRow

MEETING = {
    "issuer_code": "2330", "title": "2027 AGM", "public_company": True,
    "items": [{"key": "1", "kind": "ordinary", "title": "Dividend"},
              {"key": "2", "kind": "election", "title": "Directors", "seats": 1,
               "candidates": [{"key": "C1", "name": "Lin"}, {"key": "C2", "name": "Chen"}]}],
}


def _dates() -> dict[str, str]:
    today = dt.datetime.now(TAIPEI).date()
    return {"meeting_date": (today + dt.timedelta(days=30)).isoformat(),
            "book_closure_date": (today + dt.timedelta(days=1)).isoformat(),
            "notice_published_on": today.isoformat()}


def host(platform: Platform, issuer: str = "2330") -> dict[str, str]:
    return bearer(platform, Role.ISSUER_HOST, subject=f"host-{issuer}", tenant=issuer)


def test_a_host_creates_a_meeting_and_another_issuers_host_sees_nothing(client: TestClient,
                                                                        platform: Platform) -> None:
    assert client.post("/voting/issuers", json={"code": "2330", "name": "TSMC"}, headers=bearer(platform)).status_code == 201
    created = client.post("/voting/meetings", json={**MEETING, **_dates()}, headers=host(platform))
    assert created.status_code == 201, created.text
    meeting = created.json()
    assert meeting["status"] == "draft" and [i["key"] for i in meeting["agenda"]] == ["1", "2"]
    assert meeting["last_moment"].endswith("23:59:59 (Asia/Taipei)")
    stranger = host(platform, "2317")
    assert client.get("/voting/meetings", headers=stranger).json() == []
    for method, path in (("get", f"/voting/meetings/{meeting['id']}"), ("post", f"/voting/meetings/{meeting['id']}/publish"),
                         ("get", f"/voting/meetings/{meeting['id']}/tally")):
        answer = client.request(method, path, headers=stranger)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_meeting", path
    unregistered = client.post(f"/voting/meetings/{meeting['id']}/publish", headers=host(platform))
    assert unregistered.status_code == 409 and unregistered.json()["error"]["code"] == "register_missing"


def test_wrong_roles_tenants_and_bad_input_get_clear_4xx(client: TestClient, platform: Platform) -> None:
    client.post("/voting/issuers", json={"code": "2330", "name": "TSMC"}, headers=bearer(platform))
    broker = bearer(platform, Role.BROKER_BACKOFFICE, tenant="B001")
    assert client.post("/voting/meetings", json={**MEETING, **_dates()}, headers=broker).status_code == 403
    assert client.post("/voting/issuers", json={"code": "2317", "name": "x"}, headers=host(platform)).status_code == 403
    other = client.post("/voting/meetings", json={**MEETING, **_dates()}, headers=host(platform, "2317"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "unknown_issuer"
    assert client.post("/voting/meetings", json={**MEETING, **_dates()}).status_code == 401
    malformed = client.post("/voting/meetings", content=b"{nope", headers={**host(platform),
                                                                            "Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    backwards = {**MEETING, **_dates(), "book_closure_date": "2099-01-01"}
    answer = client.post("/voting/meetings", json=backwards, headers=host(platform))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_dates"
    bad_election = {**MEETING, **_dates(), "items": [{"key": "2", "kind": "election", "title": "x", "seats": 3,
                                                      "candidates": [{"key": "C1", "name": "Lin"}]}]}
    answer = client.post("/voting/meetings", json=bad_election, headers=host(platform))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_agenda"
    extempore_in_notice = {**MEETING, **_dates(), "items": [{"key": "E1", "kind": "extempore", "title": "x"}]}
    assert client.post("/voting/meetings", json=extempore_in_notice, headers=host(platform)).status_code == 400
    assert client.get("/voting/meetings/0", headers=host(platform)).status_code == 422
    garbage = client.post("/voting/ballots", json={"payload": "!!", "cms": "MIIB"})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "malformed_ballot"
    assert client.post("/voting/ballots", json={"payload": "e30=", "cms": "MA=="}).status_code == 400
    assert client.get("/voting/log/" + "0" * 32 + "/tree-head").status_code == 404


def _root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, written out here independently of voting.merkle."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return r


def test_ballots_over_http_get_receipts_whose_inclusion_an_outside_verifier_checks(client: TestClient,
                                                                                   platform: Platform) -> None:
    meeting = make_meeting(platform, [(f"H{n:03d}", NATIONAL_IDS[n], 100 * (n + 1)) for n in range(3)])
    receipts = []
    for n in range(3):
        who = voter(platform, f"H{n:03d}", NATIONAL_IDS[n])
        payload, cms = signed(platform, who, meeting)
        answer = client.post("/voting/ballots", json={"payload": base64.b64encode(payload).decode(),
                                                      "cms": base64.b64encode(cms).decode()})
        assert answer.status_code == 201, answer.text
        receipts.append(answer.json()["receipt"])
    head = client.get(f"/voting/log/{meeting}/tree-head").json()
    assert head["tree_size"] == 3
    with session_scope(platform.engine) as session:
        rows = session.execute(select(BallotRow).order_by(BallotRow.leaf_index)).scalars().all()
        entries = [log_entry(meeting, receipts[i]["holder"], r.ballot_sha256,
                             hashlib.sha256(r.cms).hexdigest(), r.received_at) for i, r in enumerate(rows)]
    for index, entry in enumerate(entries):
        proof = client.get(f"/voting/log/{meeting}/inclusion", params={"leaf_index": index, "tree_size": 3}).json()
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        root = _root_from_inclusion(leaf, index, 3, [base64.b64decode(p) for p in proof["path"]])
        assert root == base64.b64decode(head["root_hash"])
    consistency = client.get(f"/voting/log/{meeting}/consistency", params={"old_size": 1, "new_size": 3})
    assert consistency.status_code == 200 and len(consistency.json()["path"]) >= 1
    assert client.get(f"/voting/log/{meeting}/inclusion", params={"leaf_index": 5, "tree_size": 3}).status_code == 400


def test_a_host_uploads_the_register_over_http_all_or_nothing(client: TestClient, platform: Platform) -> None:
    client.post("/voting/issuers", json={"code": "2330", "name": "TSMC"}, headers=bearer(platform))
    meeting = client.post("/voting/meetings", json={**MEETING, **_dates()}, headers=host(platform)).json()
    good = ("holder_no,id_number,name,shares,non_voting_shares,non_voting_reason,nominee\n"
            f"H001,{NATIONAL_IDS[0]},Lin,100000000000000000000000,0,,N\n"
            f"H002,{NATIONAL_IDS[1]},Chen,500,500,treasury,N\n").encode()
    bad = good + b"H003,not-an-id,Wang,-5,0,,N\n"
    url = f"/voting/meetings/{meeting['id']}/register"
    rejected = client.put(url, content=bad, headers={**host(platform), "Content-Type": "text/csv"})
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "invalid_register"
    assert client.get(f"/voting/meetings/{meeting['id']}", headers=host(platform)).json()["register_holders"] == 0
    accepted = client.put(url, content=good, headers={**host(platform), "Content-Type": "text/csv"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["total_shares"] == "100000000000000000000500" and accepted.json()["holders"] == 2
    again = client.put(url, content=good, headers={**host(platform), "Content-Type": "text/csv"})
    assert again.json()["unchanged"] is True
    stranger = client.put(url, content=good, headers={**host(platform, "2317"), "Content-Type": "text/csv"})
    assert stranger.status_code == 404
    published = client.post(f"/voting/meetings/{meeting['id']}/publish", headers=host(platform))
    assert published.status_code == 200 and published.json()["status"] == "published"


def test_hostile_meeting_fields_and_thresholds_get_4xx(client: TestClient, platform: Platform) -> None:
    client.post("/voting/issuers", json={"code": "2330", "name": "TSMC"}, headers=bearer(platform))
    control = {**MEETING, **_dates(), "items": [{"key": "1", "kind": "ordinary", "title": "Divi\u0000dend"}]}
    assert client.post("/voting/meetings", json=control, headers=host(platform)).status_code == 422
    for value in ("1e-5000", "1e-99999999", "2/0", "abc"):
        answer = client.post("/voting/meetings", json={**MEETING, **_dates(), "thresholds": {"special_quorum": value}},
                             headers=host(platform))
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_thresholds", value
    meeting = client.post("/voting/meetings", json={**MEETING, **_dates()}, headers=host(platform)).json()
    bad_header = b"holder_no,id_number,name,shares,non_voting_shares,non_voting_reason,\xff\xfe\n"
    answer = client.put(f"/voting/meetings/{meeting['id']}/register", content=bad_header,
                        headers={**host(platform), "Content-Type": "text/csv"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_register_header"
