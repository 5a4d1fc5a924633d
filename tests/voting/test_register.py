"""The shareholder register at book closure: CSV import, all or nothing, idempotent."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from cloudseal.migrate import upgrade
from cloudseal.platform import Platform
from core import accounts
from core.auth import Actor, Role
from core.db import make_engine, session_scope, utcnow
from core.errors import AppError
from core.models import AuditEvent
from ra.identity import business_number_is_valid, national_id_is_valid
from ra.secrets import identity_hmac
from voting import register
from voting.models import BallotRow, Holder, Issuer, Meeting
from voting.register import (
    COLUMNS,
    RegisterImport,
    RegisterRejected,
    import_register,
    register_summary,
)

OPERATOR = Actor(subject="alice", role=Role.OPERATOR)
HEADER = ",".join(COLUMNS)


def national_id(first_nine: str) -> str:
    """A valid national ID: the letter and 8 digits given, then the check digit."""
    return next(first_nine + d for d in "0123456789" if national_id_is_valid(first_nine + d))


def business_number(first_seven: str) -> str:
    """A valid unified business number: the 7 digits given, then a check digit."""
    return next(first_seven + d for d in "0123456789" if business_number_is_valid(first_seven + d))


CHEN, LIN, WANG = national_id("A12345678"), national_id("F22233344"), national_id("B18765432")
COMPANY = business_number("2232450")
FUND = business_number("1234567")


def make_meeting(session: Session, issuer_code: str = "2330", status: str = "draft") -> int:
    """A meeting row of ``issuer_code`` (the issuer is created when missing)."""
    if session.get(Issuer, issuer_code) is None:
        session.add(Issuer(code=issuer_code, name=f"Issuer {issuer_code}", created_at=utcnow()))
        session.flush()
    meeting = Meeting(
        public_id=uuid.uuid4().hex, issuer_code=issuer_code, title="2026 annual general meeting",
        meeting_date=date(2026, 6, 4), book_closure_date=date(2026, 4, 6), notice_published_on=date(2026, 5, 5),
        opens_at=datetime(2026, 5, 5, 16, tzinfo=UTC), closes_at=datetime(2026, 6, 1, 16, tzinfo=UTC),
        status=status, created_by="test", created_at=utcnow())
    session.add(meeting)
    session.flush()
    return meeting.id or 0


def new_meeting(platform: Platform, issuer_code: str = "2330", status: str = "draft") -> int:
    with session_scope(platform.engine) as session:
        return make_meeting(session, issuer_code, status)


def csv_bytes(*rows: str, header: str = HEADER, bom: bool = False) -> bytes:
    text = "\r\n".join([header, *rows]) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


VALID = csv_bytes(
    f"H0001,{CHEN},Chen Mei-Ling,{10**25},0,,N",
    f'H0002,{LIN.lower()},"Lin, Wei",1500,0,,y',
    f"H0003,{WANG},王小明,000250,0,,",
    f"T0001,{COMPANY},Treasury stock account,4000,4000,treasury,false",
    f"S0001,{FUND},Subsidiary holding,700,300,subsidiary,1",
)
VALID_TOTAL = 10**25 + 1500 + 250 + 4000 + 700


def run_import(platform: Platform, meeting_id: int, data: bytes, *, actor: Actor = OPERATOR,
               **options: object) -> RegisterImport:
    with session_scope(platform.engine) as session:
        return import_register(session, platform.keystore, actor=actor, meeting_id=meeting_id,
                               stream=io.BytesIO(data), **options)  # type: ignore[arg-type]


def rejected(platform: Platform, meeting_id: int, data: bytes, **options: object) -> RegisterRejected:
    with pytest.raises(RegisterRejected) as caught:
        run_import(platform, meeting_id, data, **options)
    return caught.value


def holders_of(platform: Platform, meeting_id: int) -> dict[str, Holder]:
    with Session(platform.engine) as session:
        rows = session.execute(select(Holder).where(Holder.meeting_id == meeting_id)).scalars()
        return {holder.holder_no: holder for holder in rows}


def test_valid_register_imports_with_exact_big_integer_sums(any_platform: Platform) -> None:
    meeting_id = new_meeting(any_platform)
    seen: list[int] = []
    summary = run_import(any_platform, meeting_id, VALID, progress=seen.append)
    assert summary == RegisterImport(holders=5, total_shares=VALID_TOTAL, non_voting_shares=4300,
                                     voting_shares=VALID_TOTAL - 4300, sha256=summary.sha256, unchanged=False)
    assert summary.sha256 == hashlib.sha256(VALID).hexdigest()
    assert seen and seen[-1] == len(VALID)
    holders = holders_of(any_platform, meeting_id)
    assert holders["H0001"].shares == 10**25 and holders["H0003"].shares == 250
    assert (holders["H0002"].name, holders["H0002"].nominee) == ("Lin, Wei", True)
    assert (holders["T0001"].non_voting_reason, holders["T0001"].nominee) == ("treasury", False)
    assert holders["H0001"].non_voting_reason is None
    with Session(any_platform.engine) as session:
        meeting = session.get(Meeting, meeting_id)
        assert meeting is not None
        assert (meeting.register_sha256, meeting.register_holders) == (summary.sha256, 5)
        assert register_summary(session, meeting_id) == summary
        event = session.execute(select(AuditEvent).where(AuditEvent.action == "register.import")).scalar_one()
    assert event.object_id == meeting.public_id and '"holders":5' in event.details
    assert CHEN not in event.details and COMPANY not in event.details


def test_a_holders_id_hmac_is_the_ra_identity_hmac_so_investors_match(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    run_import(platform, meeting_id, VALID)
    holders = holders_of(platform, meeting_id)
    assert holders["H0001"].id_hmac == identity_hmac(platform.keystore, "national_id", CHEN)
    assert holders["H0002"].id_hmac == identity_hmac(platform.keystore, "national_id", LIN)  # upper-cased
    assert holders["T0001"].id_hmac == identity_hmac(platform.keystore, "business_number", COMPANY)


def test_every_bad_line_is_named_and_nothing_is_imported(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    data = csv_bytes(
        f"H1,{CHEN},Good Holder,100,0,,N",                     # 2
        f"H2,{CHEN[:-1]}{(int(CHEN[-1]) + 1) % 10},Bad Check,100,0,,N",  # 3: check digit
        f"H3,{LIN},Negative,-5,0,,N",                          # 4: sign
        f"H4,{LIN},Too Many,100,101,other,N",                  # 5: non-voting > shares
        f"H5,{LIN},No Reason,100,10,,N",                       # 6: reason missing
        f"H6,{LIN},Odd Nominee,100,0,,maybe",                  # 7: nominee
        f"H7,{LIN},Six Fields,100,0,",                         # 8: field count
        "",                                                    # 9: blank, ignored
        f"H1,{WANG},Same Number,100,0,,N",                     # 10: duplicate holder_no
        f"H9,{WANG},Bell\x07Name,100,0,,N",                    # 11: control character
        f"H10,{WANG},Huge,{'9' * 31},0,,N",                    # 12: 31 digits
        f"H 11,{WANG},Spaced Number,100,0,,N",                 # 13: space in holder_no
        f"H12,{WANG},Bad Reason,100,5,bogus,N",                # 14: reason
        f'H13,{WANG},"Quoted"x,100,0,,N',                      # 15: broken quoting
        "H14,ABC,Not An ID,100,0,,N",                         # 16: neither form
        f"H15,{WANG},Good Too,100,0,,N",                       # 17
    ) + b"H16," + WANG.encode() + b",\xff\xfeBad Bytes,100,0,,N\r\n"  # 18: invalid UTF-8
    error = rejected(platform, meeting_id, data)
    assert (error.code, error.status_code) == ("invalid_register", 400)
    lines = sorted({e.line for e in error.errors})
    assert lines == [3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 18]
    assert error.error_count == len(error.errors) == len(lines)
    columns = {e.line: e.column for e in error.errors}
    assert columns[3] == columns[16] == "id_number" and columns[5] == "non_voting_shares"
    assert columns[8] is None and columns[10] == "holder_no" and columns[18] == "name"
    assert "UTF-8" in next(e.message for e in error.errors if e.line == 18)
    assert error.to_body()["error"]["details"]["error_count"] == len(lines)
    assert holders_of(platform, meeting_id) == {}
    with Session(platform.engine) as session:
        assert session.get(Meeting, meeting_id).register_sha256 is None  # type: ignore[union-attr]


def test_a_repeated_holder_number_is_found_across_batches(platform: Platform,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(register, "BATCH_ROWS", 2)
    meeting_id = new_meeting(platform)
    rows = [f"H{n},{CHEN},Holder {n},10,0,,N" for n in range(1, 8)] + [f"H2,{LIN},Again,10,0,,N"]
    error = rejected(platform, meeting_id, csv_bytes(*rows))
    assert [(e.line, e.column) for e in error.errors] == [(9, "holder_no")]


def test_a_rejected_file_leaves_nothing_even_if_the_caller_commits(any_platform: Platform) -> None:
    meeting_id = new_meeting(any_platform)
    with session_scope(any_platform.engine) as session, pytest.raises(RegisterRejected):
        import_register(session, any_platform.keystore, actor=OPERATOR, meeting_id=meeting_id,
                        stream=io.BytesIO(csv_bytes(f"H1,{CHEN},Good,1,0,,N", "H2,bad,Bad,1,0,,N")))
    assert holders_of(any_platform, meeting_id) == {}


def test_stored_errors_are_capped_but_counted_exactly(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(register, "MAX_STORED_ERRORS", 5)
    monkeypatch.setattr(register, "BATCH_ROWS", 3)
    meeting_id = new_meeting(platform)
    error = rejected(platform, meeting_id, csv_bytes(*[f"H{n},{CHEN},Name,x,0,,N" for n in range(12)]))
    assert error.error_count == 12
    assert [e.line for e in error.errors] == [2, 3, 4, 5, 6]


def test_a_line_too_long_is_reported_and_reading_goes_on(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    error = rejected(platform, meeting_id, csv_bytes(
        f"H1,{CHEN},{'x' * 10_000},1,0,,N", f"H2,{CHEN},Fine,1,0,,N", f"H3,{CHEN},Fine,1,0,,nope"))
    assert [(e.line, e.column) for e in error.errors] == [(2, None), (4, "nominee")]
    assert "longer than" in error.errors[0].message


def test_the_same_bytes_again_change_nothing(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    first = run_import(platform, meeting_id, VALID)
    again = run_import(platform, meeting_id, VALID)
    assert again.unchanged and again == dataclasses.replace(first, unchanged=True)
    with Session(platform.engine) as session:
        imports = session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "register.import")).scalar()
    assert imports == 1


def test_a_different_file_is_register_exists_and_replace_replaces(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    run_import(platform, meeting_id, VALID)
    other = csv_bytes(f"N0001,{WANG},New Holder,42,0,,N")
    with pytest.raises(AppError) as caught:
        run_import(platform, meeting_id, other)
    assert (caught.value.status_code, caught.value.code) == (409, "register_exists")
    replaced = run_import(platform, meeting_id, other, replace=True)
    assert (replaced.holders, replaced.total_shares, replaced.unchanged) == (1, 42, False)
    assert set(holders_of(platform, meeting_id)) == {"N0001"}


def test_a_bad_replacement_keeps_the_register_in_place(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    first = run_import(platform, meeting_id, VALID)
    rejected(platform, meeting_id, csv_bytes("N1,nope,Bad,1,0,,N"), replace=True)
    assert len(holders_of(platform, meeting_id)) == 5
    with Session(platform.engine) as session:
        assert register_summary(session, meeting_id) == first


def test_replace_after_a_ballot_is_register_locked(platform: Platform) -> None:
    meeting_id = new_meeting(platform)
    run_import(platform, meeting_id, VALID)
    with session_scope(platform.engine) as session:
        holder_id = session.execute(select(Holder.id).where(Holder.holder_no == "H0001")).scalar_one()
        session.add(BallotRow(meeting_id=meeting_id, holder_id=holder_id, ballot_sha256="0" * 64, payload=b"{}",
                              cms=b"", signer_serial="01", investor_reference="INV-000001",
                              received_at=utcnow(), status="counted", leaf_index=0))
    with pytest.raises(AppError) as caught:
        run_import(platform, meeting_id, csv_bytes(f"N1,{WANG},New,1,0,,N"), replace=True)
    assert (caught.value.status_code, caught.value.code) == (409, "register_locked")
    assert run_import(platform, meeting_id, VALID, replace=True).unchanged  # the same bytes are still fine


def test_a_frozen_meeting_is_register_locked(platform: Platform) -> None:
    meeting_id = new_meeting(platform, status="frozen")
    with pytest.raises(AppError) as caught:
        run_import(platform, meeting_id, VALID)
    assert caught.value.code == "register_locked"


def test_a_host_of_another_issuer_gets_unknown_meeting(platform: Platform) -> None:
    meeting_id = new_meeting(platform, issuer_code="2330")
    with pytest.raises(AppError) as caught:
        run_import(platform, meeting_id, VALID, actor=Actor(subject="h", role=Role.ISSUER_HOST, tenant="2317"))
    assert (caught.value.status_code, caught.value.code) == (404, "unknown_meeting")
    own_host = Actor(subject="h", role=Role.ISSUER_HOST, tenant="2330")
    assert run_import(platform, meeting_id, VALID, actor=own_host).holders == 5


@pytest.mark.parametrize(("header", "column", "message"), [
    ("holder_no,id_number,name,shares,non_voting_shares,non_voting_reason", "nominee", "missing column"),
    (HEADER + ",email", "email", "unknown column"),
    ("holder_no,holder_no,id_number,name,shares,non_voting_shares,non_voting_reason,nominee", "holder_no",
     "duplicated column"),
])
def test_a_wrong_header_is_invalid_register_header(platform: Platform, header: str, column: str,
                                                   message: str) -> None:
    error = rejected(platform, new_meeting(platform), csv_bytes(f"H1,{CHEN},Name,1,0,,N", header=header))
    assert error.code == "invalid_register_header"
    assert (1, column, message) in [(e.line, e.column, e.message) for e in error.errors]


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", HEADER.encode(), (HEADER + "\r\n\r\n\r\n").encode()])
def test_an_empty_file_or_a_header_alone_is_empty_register(platform: Platform, data: bytes) -> None:
    assert rejected(platform, new_meeting(platform), data).code == "empty_register"


def test_columns_in_any_order_and_a_bom_are_accepted(platform: Platform) -> None:
    header = "nominee,shares,name,holder_no,non_voting_reason,non_voting_shares,id_number"
    data = csv_bytes(f"Y,300,Chen Mei-Ling,H1,,0,{CHEN}", header=header, bom=True)
    assert run_import(platform, new_meeting(platform), data).total_shares == 300


def test_a_non_seekable_stream_is_hashed_before_replacing(platform: Platform) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = self._data.read(min(len(buffer), 7))
            buffer[:len(chunk)] = chunk
            return len(chunk)

    meeting_id = new_meeting(platform)
    run_import(platform, meeting_id, VALID)
    with session_scope(platform.engine) as session:
        again = import_register(session, platform.keystore, actor=OPERATOR, meeting_id=meeting_id,
                                stream=Pipe(VALID))  # type: ignore[arg-type]
        other = import_register(session, platform.keystore, actor=OPERATOR, meeting_id=meeting_id, replace=True,
                                stream=Pipe(csv_bytes(f"N1,{WANG},New,9,0,,N")))  # type: ignore[arg-type]
    assert again.unchanged and (other.holders, other.total_shares) == (1, 9)


# The command line, run as an operator would.

def cloudseal(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
           "CLOUDSEAL_HSM": f"soft:{tmp_path}/hsm", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cloudseal", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def cli_meeting(tmp_path: Path) -> int:
    upgrade(f"sqlite:///{tmp_path}/c.db")
    assert cloudseal(tmp_path, "init").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    try:
        with session_scope(engine) as session:
            meeting_id = make_meeting(session)
            accounts.create_staff_user(session, actor=OPERATOR, username="host2317", password="a long passphrase",
                                       role=Role.ISSUER_HOST, tenant="2317")
            return meeting_id
    finally:
        engine.dispose()


def test_cli_imports_a_register_and_prints_the_summary(tmp_path: Path, cli_meeting: int) -> None:
    path = tmp_path / "register.csv"
    path.write_bytes(VALID)
    done = cloudseal(tmp_path, "register", "import", str(cli_meeting), str(path))
    assert done.returncode == 0, done.stderr
    assert "5 holders" in done.stderr and f"{VALID_TOTAL:,} shares" in done.stderr
    again = cloudseal(tmp_path, "register", "import", str(cli_meeting), str(path))
    assert again.returncode == 0 and "nothing changed" in again.stderr
    foreign = cloudseal(tmp_path, "register", "import", str(cli_meeting), str(path), "--replace", "--as", "host2317")
    assert foreign.returncode == 1 and "unknown_meeting" in foreign.stderr


def test_cli_names_the_bad_lines_and_exits_1(tmp_path: Path, cli_meeting: int) -> None:
    path = tmp_path / "register.csv"
    path.write_bytes(csv_bytes(f"H1,{CHEN},Good,1,0,,N", "H2,A000000000,Bad,1,0,,N", f"H3,{CHEN},Bad,x,0,,N"))
    failed = cloudseal(tmp_path, "register", "import", str(cli_meeting), str(path))
    assert failed.returncode == 1
    assert "line 3 [id_number]" in failed.stderr and "line 4 [shares]" in failed.stderr
    assert "2 problem(s)" in failed.stderr and "invalid_register" in failed.stderr
