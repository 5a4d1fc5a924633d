"""Certificates issued per second through the service layer (software HSM, SQLite).

Each issuance is one committed transaction: a P-384 signature by the issuing CA, two
pre-signed OCSP responses (SHA-1 and SHA-256 CertIDs), the certificate row and an audit entry.
Target: 500 certificates/s on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier

from _support import fresh_platform, report, timed_processes
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca import service
from cloudseal.platform import build_platform
from core.auth import Actor, Role
from core.db import session_scope
from core.settings import Settings

TARGET = 500


def investor_subject(reference: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Investor"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, reference)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes sharing the database and HSM, as API workers do")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    platform, workdir = fresh_platform(args.database_url)
    if args.processes > 1:
        run_processes(platform.settings, args.count, args.processes)
        platform.close()
        return
    actor = Actor(subject="bench", role=Role.OPERATOR)
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(64)]
    def issue(i: int) -> None:
        with session_scope(platform.engine) as session:
            service.issue_certificate(
                session, platform.pki, actor=actor, ca_name="issuing", profile_name="investor_signing",
                subject=investor_subject(reference=f"INV-{i:08d}"), public_key=keys[i % len(keys)],
            )

    for i in range(20):  # warm caches (CA certificate, key unwrapping)
        issue(-i - 1)
    started = time.perf_counter()
    if args.threads == 1:
        for i in range(args.count):
            issue(i)
    else:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(issue, range(args.count)))
    elapsed = time.perf_counter() - started
    report("bench/issue.py certificates issued", args.count / elapsed, TARGET, "certs/s",
           f"({args.count} in {elapsed:.2f}s, {args.threads} thread(s), {platform.settings.database_url.split(':')[0]})")
    platform.close()


def _worker(settings: Settings, start: int, count: int, ready: Barrier) -> None:
    platform = build_platform(settings)
    actor = Actor(subject="bench", role=Role.OPERATOR)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()

    def issue(i: int) -> None:
        with session_scope(platform.engine) as session:
            service.issue_certificate(
                session, platform.pki, actor=actor, ca_name="issuing", profile_name="investor_signing",
                subject=investor_subject(reference=f"INV-{i:08d}"), public_key=key,
            )

    for i in range(10):
        issue(start - i - 1 - 10_000_000)
    ready.wait()
    for i in range(start, start + count):
        issue(i)
    platform.close()


def run_processes(settings: Settings, count: int, processes: int) -> None:
    """Issue ``count`` certificates split over ``processes`` processes on one database."""
    share = count // processes
    elapsed = timed_processes(_worker, [(settings, n * share, share) for n in range(processes)])
    report("bench/issue.py certificates issued", share * processes / elapsed, TARGET, "certs/s",
           f"({share * processes} in {elapsed:.2f}s, {processes} processes, {settings.database_url.split(':')[0]})")


if __name__ == "__main__":
    main()
