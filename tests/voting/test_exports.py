"""CSV exports: the tally (running, then frozen) and the streamed list of ballots."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io

from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlmodel import Session

from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope
from tests.conftest import bearer
from tests.voting.test_ballots import HOST, make_meeting
from tests.voting.test_report import FrozenMeeting, freeze, voted_meeting
from voting import exports, results
from voting.models import BallotRow, Holder, Meeting
from voting.service import AgendaItemIn


def host_headers(platform: Platform) -> dict[str, str]:
    return bearer(platform, Role.ISSUER_HOST, subject="hana", tenant="2330")


def parse(body: bytes) -> list[dict[str, str]]:
    assert body.startswith("\ufeff".encode())  # the BOM: spreadsheets then read UTF-8
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def tally_url(meeting: FrozenMeeting) -> str:
    return f"/voting/meetings/{meeting.meeting_id}/exports/tally.csv"


def ballots_url(meeting: FrozenMeeting) -> str:
    return f"/voting/meetings/{meeting.meeting_id}/exports/ballots.csv"


def check_tally_rows(rows: list[dict[str, str]], tally: dict) -> None:
    """Every figure of the CSV equals the tally endpoint's."""
    by_item = {(r["item"], r["kind"], r["candidate"]): r for r in rows}
    for item in tally["items"]:
        if item["kind"] == "election":
            summary = by_item[(item["item_id"], "election", "")]
            assert (summary["denominator"], summary["votes"]) == (item["votes_available"], item["votes_cast"])
            for candidate in item["candidates"]:
                row = by_item[(item["item_id"], "candidate", candidate["candidate_id"])]
                assert row["votes"] == candidate["votes"]
            continue
        row = by_item[(item["item_id"], item["kind"], "")]
        assert (row["for"], row["against"], row["abstain"], row["not_voted"], row["denominator"]) == (
            item["for_votes"], item["against_votes"], item["abstain_votes"], item["not_voted"], item["denominator"])
        assert row["rule"] == item["rule"] and row["adopted"] == ("yes" if item["adopted"] else "no")


def test_the_tally_csv_is_the_running_tally_before_freezing_and_the_frozen_one_after(
        platform: Platform, client: TestClient) -> None:
    meeting = voted_meeting(platform)
    running = client.get(tally_url(meeting), headers=host_headers(platform))
    assert running.status_code == 200 and running.headers["x-tally-status"] == "running"
    assert running.headers["content-type"].startswith("text/csv") and "tally-running.csv" in running.headers[
        "content-disposition"]
    with session_scope(platform.engine) as session:
        check_tally_rows(parse(running.content), results.tally_for(session, HOST, meeting.meeting_id))
    freeze(platform, meeting)
    frozen = client.get(tally_url(meeting), headers=host_headers(platform))
    assert frozen.headers["x-tally-status"] == "frozen"
    rows = parse(frozen.content)
    with session_scope(platform.engine) as session:
        check_tally_rows(rows, results.tally_for(session, HOST, meeting.meeting_id))
    assert list(rows[0]) == list(exports.TALLY_COLUMNS)
    assert rows[0]["title"] == "承認2025年度營業報告書及財務報表案" and rows[0]["for"] == "1534567"
    candidates = {r["candidate"]: r for r in rows if r["kind"] == "candidate"}
    assert candidates["C1"]["candidate_name"] == "林志明" and candidates["C1"]["elected"] == "yes"
    assert (candidates["C2"]["elected"], candidates["C3"]["elected"]) == ("lot", "lot")
    assert candidates["C2"]["votes"] == "800000"


def test_the_ballots_csv_lists_every_ballot_with_taipei_and_utc_times(platform: Platform, client: TestClient) -> None:
    meeting = voted_meeting(platform)
    answer = client.get(ballots_url(meeting), headers=host_headers(platform))
    assert answer.status_code == 200 and "ballots.csv" in answer.headers["content-disposition"]
    rows = parse(answer.content)
    assert list(rows[0]) == list(exports.BALLOT_COLUMNS)
    with session_scope(platform.engine) as session:
        stored = session.execute(select(BallotRow.ballot_sha256, BallotRow.received_at, BallotRow.status)
                                 .order_by(BallotRow.id)).all()
    assert [(r["holder_no"], r["status"], r["leaf_index"]) for r in rows] == [
        ("H001", "counted", "0"), ("H002", "counted", "1"), ("H002", "superseded", "2")]
    for row, (sha256, received_at, _) in zip(rows, stored, strict=True):
        taipei = dt.datetime.fromisoformat(row["received_at_taipei"])
        utc = dt.datetime.fromisoformat(row["received_at_utc"])
        assert row["received_at_taipei"].endswith("+08:00") and row["received_at_utc"].endswith("Z")
        assert taipei == utc == received_at and row["ballot_sha256"] == sha256


def test_exports_are_for_the_issuers_hosts_operators_and_auditors_of_frozen_meetings(
        platform: Platform, client: TestClient) -> None:
    meeting = voted_meeting(platform)
    auditor = bearer(platform, Role.AUDITOR, subject="audrey")
    other_host = bearer(platform, Role.ISSUER_HOST, subject="eve", tenant="2317")
    for url in (tally_url(meeting), ballots_url(meeting)):
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
        refused = client.get(url, headers=other_host)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_meeting"
        assert client.get(url, headers=auditor).status_code == 404  # auditors read frozen meetings only
        assert client.get(url, headers=bearer(platform, Role.RA_OFFICER, tenant="B001")).status_code == 403
        assert client.get(url, headers=bearer(platform)).status_code == 200  # an operator
    freeze(platform, meeting)
    for url in (tally_url(meeting), ballots_url(meeting)):
        assert client.get(url, headers=auditor).status_code == 200


def test_bad_export_requests_get_json_4xx(platform: Platform, client: TestClient) -> None:
    for path in ("/voting/meetings/0/exports/tally.csv", "/voting/meetings/-1/exports/ballots.csv",
                 "/voting/meetings/x/exports/tally.csv", "/voting/meetings/" + "9" * 40 + "/exports/ballots.csv"):
        answer = client.get(path, headers=host_headers(platform))
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error", path
    for path in ("/voting/meetings/424242/exports/tally.csv", "/voting/meetings/424242/exports/ballots.csv"):
        answer = client.get(path, headers=host_headers(platform))
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_meeting"


def test_a_title_a_spreadsheet_would_run_as_a_formula_is_neutralised(platform: Platform, client: TestClient) -> None:
    public_id = make_meeting(platform, [], items=[AgendaItemIn("1", "ordinary", '=HYPERLINK("http://x","y")'),
                                                  AgendaItemIn("2", "ordinary", "@SUM(A1)")])
    with session_scope(platform.engine) as session:
        meeting_id = _meeting_id(session, public_id)
    rows = parse(client.get(f"/voting/meetings/{meeting_id}/exports/tally.csv", headers=host_headers(platform)).content)
    assert [r["title"] for r in rows] == ['\'=HYPERLINK("http://x","y")', "'@SUM(A1)"]
    assert exports.safe_cell(-5) == "'-5" and exports.safe_cell(12) == "12"


def _meeting_id(session: Session, public_id: str) -> int:
    return session.execute(select(Meeting.id).where(Meeting.public_id == public_id)).scalar_one()


def add_ballots(platform: Platform, meeting_id: int, count: int) -> None:
    """``count`` holders with one stored ballot each (their signatures are not what is tested here)."""
    received = dt.datetime(2026, 6, 1, 15, 0, tzinfo=dt.UTC)
    with session_scope(platform.engine) as session:
        session.execute(insert(Holder), [
            {"meeting_id": meeting_id, "holder_no": f"B{n:06d}", "id_hmac": f"{n:064x}", "name": "n", "shares": 10,
             "non_voting_shares": 0} for n in range(count)])
        holder_ids = {no: id_ for no, id_ in session.execute(
            select(Holder.holder_no, Holder.id).where(Holder.meeting_id == meeting_id))}
        session.execute(insert(BallotRow), [
            {"meeting_id": meeting_id, "holder_id": holder_ids[f"B{n:06d}"],
             "ballot_sha256": hashlib.sha256(str(n).encode()).hexdigest(), "payload": b"{}", "cms": b"",
             "signer_serial": "1", "investor_reference": "r", "received_at": received + dt.timedelta(seconds=n),
             "status": "counted", "item_status": "{}", "leaf_index": n} for n in range(count)])


def test_a_large_meeting_streams_its_ballots_in_chunks(platform: Platform, client: TestClient) -> None:
    public_id = make_meeting(platform, [])
    with session_scope(platform.engine) as session:
        meeting_id = _meeting_id(session, public_id)
    add_ballots(platform, meeting_id, 12_000)
    chunks = list(exports.ballots_csv(platform.read_engine, meeting_id, chunk_rows=2000))
    assert len(chunks) == 1 + 6 and all(chunk.count("\r\n") <= 2000 for chunk in chunks)
    with client.stream("GET", f"/voting/meetings/{meeting_id}/exports/ballots.csv",
                       headers=host_headers(platform)) as answer:
        assert answer.status_code == 200 and "content-length" not in answer.headers
        body = b"".join(answer.iter_bytes())
    rows = parse(body)
    assert len(rows) == 12_000 and [r["leaf_index"] for r in rows[:3]] == ["0", "1", "2"]
    assert rows[-1]["holder_no"] == "B011999" and rows[-1]["received_at_taipei"] == "2026-06-02T02:19:59+08:00"
