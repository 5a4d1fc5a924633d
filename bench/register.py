"""Import of a shareholder register of 2,000,000 rows (SQLite + software HSM).

Writes a valid register CSV (real check digits, a tenth of holders companies, some nominees,
some shares without voting rights, a few holders with more than 10**25 shares), then times
``voting.register.import_register`` into a fresh platform, then a re-upload of the same
file (idempotent: nothing changes). Target: under 60 s for the import.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

from _support import fresh_platform, report

from core.auth import Actor, Role
from core.db import session_scope, utcnow
from voting.models import Issuer, Meeting
from voting.register import import_register

TARGET_SECONDS = 60
TARGET_ROWS = 2_000_000
_LETTERS = {"A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "J": 18, "K": 19,
            "L": 20, "M": 21, "N": 22, "P": 23, "Q": 24, "R": 25, "S": 26, "T": 27, "U": 28, "V": 29}


def _national_id(rng: random.Random) -> str:
    letter = rng.choice(list(_LETTERS))
    code = _LETTERS[letter]
    digits = [rng.choice((1, 2))] + [rng.randrange(10) for _ in range(7)]
    total = code // 10 + (code % 10) * 9 + sum(d * w for d, w in zip(digits, (8, 7, 6, 5, 4, 3, 2, 1)))
    return letter + "".join(map(str, digits)) + str((10 - total % 10) % 10)


def _business_number(rng: random.Random) -> str:
    while True:
        stem = "".join(str(rng.randrange(10)) for _ in range(7))
        if stem[6] == "7":
            continue
        for last in range(10):
            candidate = stem + str(last)
            total = sum(p // 10 + p % 10 for p in (int(d) * w for d, w in zip(candidate, (1, 2, 1, 2, 1, 2, 4, 1))))
            if total % 5 == 0:
                return candidate


def write_register(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("holder_no,id_number,name,shares,non_voting_shares,non_voting_reason,nominee\r\n")
        for i in range(rows):
            company = i % 10 == 9
            ident = _business_number(rng) if company else _national_id(rng)
            name = f"公司股份有限公司 {i}" if company else (f"陳美玲 {i}" if i % 2 else f'"Chen, Mei-Ling {i}"')
            shares = rng.randrange(1, 10_000_000) if i % 100_000 else 10**25 + i
            non_voting, reason = (shares // 2, "subsidiary") if i % 1000 == 7 else (0, "")
            out.write(f"{i:08d},{ident},{name},{shares},{non_voting},{reason},{'Y' if i % 50 == 3 else 'N'}\r\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    csv_path = Path(tempfile.mkdtemp(prefix="cloudseal-register-")) / "register.csv"
    write_register(csv_path, args.rows)
    platform, _ = fresh_platform()
    with session_scope(platform.engine) as session:
        session.add(Issuer(code="2330", name="Bench", created_at=utcnow()))
        session.flush()
        meeting = Meeting(public_id=uuid.uuid4().hex, issuer_code="2330", title="AGM",
                          meeting_date=dt.date(2027, 6, 4), book_closure_date=dt.date(2027, 4, 6),
                          notice_published_on=dt.date(2027, 5, 5),
                          opens_at=dt.datetime(2027, 5, 5, 16, tzinfo=dt.timezone.utc),
                          closes_at=dt.datetime(2027, 6, 1, 16, tzinfo=dt.timezone.utc),
                          created_by="bench", created_at=utcnow())
        session.add(meeting)
        session.flush()
        meeting_id = meeting.id or 0
    actor = Actor("bench", Role.OPERATOR)
    started = time.perf_counter()
    with csv_path.open("rb") as stream, session_scope(platform.engine) as session:
        summary = import_register(session, platform.keystore, actor=actor, meeting_id=meeting_id, stream=stream)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    with csv_path.open("rb") as stream, session_scope(platform.engine) as session:
        again = import_register(session, platform.keystore, actor=actor, meeting_id=meeting_id, stream=stream)
    reupload = time.perf_counter() - started
    platform.close()
    report("bench/register.py register import", summary.holders / seconds, TARGET_ROWS / TARGET_SECONDS, "rows/s",
           f"{summary.holders:,} holders ({csv_path.stat().st_size / 1e6:.0f} MB) in {seconds:.1f} s "
           f"(target: {TARGET_ROWS:,} in {TARGET_SECONDS} s); re-upload unchanged={again.unchanged} in "
           f"{reupload:.1f} s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
