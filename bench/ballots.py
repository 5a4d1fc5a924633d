"""Signed ballots submitted over HTTP, verified and durably recorded, for several meetings.

Enrols investors (the credential path of the RA), registers them as holders of several
meetings, pre-signs the ballots with the investors' HSM keys (detached CAdES-BES over the
canonical ballot, as the app's signing call produces), then ``cloudseal serve`` (2 workers,
SQLite by default) receives them from client threads: each is CMS-verified, checked against
the register and agenda, stored, appended to the meeting's Merkle log with a sealed tree
head, and answered with a sealed receipt. Target: 1,000 ballots/s end to end on 2 cores.
``--ballots 100000`` is the issue's full run; the default is smaller to finish in minutes.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import subprocess
import sys

import loadgen
from _support import ROOT, fresh_platform, percentile, process_tree_cpu_seconds, python_loop_seconds, report
from cms_template import CmsTemplate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from enrol import OPERATOR, enrol_one, national_ids
from ocsp import _free_port, wait_for_server
from sqlalchemy import select

from ca.service import get_certificate
from core.auth import Actor, Role
from core.db import session_scope, utcnow
from hsm_sim.facade import hsm_private_key
from ra import secrets as ra_secrets
from ra import service as ra_service
from ra.models import Credential, Investor
from voting import service as voting
from voting.ballot import build_ballot, new_nonce
from voting.calendar import TAIPEI
from voting.models import Holder

TARGET = 1000
ITEMS = [voting.AgendaItemIn("1", "ordinary", "Dividend"), voting.AgendaItemIn("2", "special", "Articles"),
         voting.AgendaItemIn("3", "election", "Directors", seats=2, candidates=(
             voting.CandidateIn("C1", "Lin"), voting.CandidateIn("C2", "Chen"), voting.CandidateIn("C3", "Wang")))]


def setup(platform, investors: int, meetings: int) -> tuple[list[str], list[tuple]]:
    """Meetings (public ids) and, per investor, (holder number, key, certificate, chain)."""
    officer = Actor("bench-officer", Role.RA_OFFICER, "B000")
    with session_scope(platform.engine) as session:
        ra_service.create_broker(session, actor=OPERATOR, code="B000", name="Bench")
    ids = national_ids(investors, seed=21)
    signers = []
    for n, id_number in enumerate(ids):
        reference, credential_id = enrol_one(platform, officer, id_number, ec.generate_private_key(ec.SECP256R1()))
        with session_scope(platform.engine) as session:
            credential = session.execute(select(Credential).where(Credential.credential_id == credential_id)).scalar_one()
            investor = session.get(Investor, credential.investor_id)
            certificate = x509.load_der_x509_certificate(get_certificate(session, credential.certificate_serial).der)
            chain = [platform.pki.ca_certificate(platform.pki.load_ca(session, name)) for name in ("issuing", "root")]
        key = hsm_private_key(platform.keystore, credential.key_label, f"investor:{investor.reference}")
        signers.append((f"H{n:06d}", key, certificate, chain, id_number))
    today = dt.datetime.now(TAIPEI).date()
    public_ids = []
    host = Actor("bench-host", Role.ISSUER_HOST, "2330")
    with session_scope(platform.engine) as session:
        voting.create_issuer(session, actor=OPERATOR, code="2330", name="Bench Issuer")
    for _ in range(meetings):
        with session_scope(platform.engine) as session:
            meeting = voting.create_meeting(
                session, actor=host, issuer_code="2330", title="Bench AGM", meeting_date=today + dt.timedelta(days=20),
                book_closure_date=today - dt.timedelta(days=1), notice_published_on=today - dt.timedelta(days=2),
                public_company=True, items=ITEMS)
            for holder_no, _, _, _, id_number in signers:
                session.add(Holder(meeting_id=meeting.id or 0, holder_no=holder_no, name=holder_no, shares=1000,
                                   non_voting_shares=0,
                                   id_hmac=ra_secrets.identity_hmac(platform.keystore, "national_id", id_number)))
            meeting.register_sha256, meeting.register_holders = "0" * 64, len(signers)
            session.add(meeting)
            session.flush()
            voting.publish_meeting(session, actor=host, meeting_id=meeting.id or 0)
            public_ids.append(meeting.public_id)
    return public_ids, signers


def presign(meetings: list[str], signers: list[tuple], count: int) -> list[dict[str, str]]:
    """``count`` signed ballots, cycling through the signers and then the meetings. The CMS
    comes from per-signer templates (``cms_template``), every 5,000th checked byte for byte."""
    templates = [CmsTemplate(certificate, chain, key) for _, key, certificate, chain, _ in signers]
    bodies = []
    for n in range(count):
        holder_no = signers[n % len(signers)][0]
        meeting = meetings[(n // len(signers)) % len(meetings)]
        now = utcnow()
        payload = build_ballot(meeting, holder_no, {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 2000}}},
                               new_nonce(), now)
        cms = templates[n % len(signers)].sign(payload, now, check=n % 5000 == 0)
        bodies.append({"payload": base64.b64encode(payload).decode(), "cms": base64.b64encode(cms).decode()})
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ballots", type=int, default=5000)
    parser.add_argument("--investors", type=int, default=50)
    parser.add_argument("--meetings", type=int, default=5)
    parser.add_argument("--connections", type=int, default=128,
                        help="concurrent client connections (a meeting's voters send at once, not one by one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="e.g. a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a PostgreSQL server of its own (durable settings) from the installed binaries")
    args = parser.parse_args()
    if args.postgres:
        from tests.support.postgres import PostgresCluster, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise SystemExit("no PostgreSQL binaries found (apt-get install postgresql)")
        cluster = PostgresCluster(bin_dir)
        cluster.start(durable=True)
        try:
            args.database_url = cluster.create_database()
            # The database's own processes share the two cores: their CPU is counted too.
            args.database_pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
            run(args)
        finally:
            cluster.stop()
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    """One benchmark run with the parsed options."""
    port = _free_port()
    platform, _ = fresh_platform(args.database_url, public_url=f"http://127.0.0.1:{port}")
    meetings, signers = setup(platform, args.investors, args.meetings)
    bodies = presign(meetings, signers, args.ballots)
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": platform.settings.database_url,
           "CLOUDSEAL_HSM": platform.settings.hsm, "CLOUDSEAL_PUBLIC_URL": platform.settings.public_url}
    platform.close()
    server = subprocess.Popen([sys.executable, "-m", "cloudseal", "serve", "--port", str(port),
                               "--workers", str(args.workers)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    requests = loadgen.post_requests("127.0.0.1", port, "/voting/ballots",
                                     [json.dumps(body).encode() for body in bodies])
    try:
        wait_for_server(port, server)
        pids = [server.pid] + ([args.database_pid] if getattr(args, "database_pid", None) else [])
        cpu_before = [process_tree_cpu_seconds(pid) for pid in pids]
        result = loadgen.run("127.0.0.1", port, requests, connections=args.connections)
        cpu_parts = [process_tree_cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before)]
        server_cpu = sum(cpu_parts)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies, failures, elapsed = result.latencies, result.failures, result.elapsed
    database = "PostgreSQL" if args.database_url else "SQLite"
    report(f"bench/ballots.py ballots over HTTP ({database})", len(latencies) / elapsed, TARGET, "ballots/s",
           f"{len(latencies):,} accepted in {elapsed:.1f} s, {len(failures)} refused; p50 "
           f"{percentile(latencies, .5) * 1000:.1f} ms, p99 {percentile(latencies, .99) * 1000:.1f} ms; "
           f"{args.meetings} meetings, {args.investors} holders each, {args.workers} workers")
    if latencies and server_cpu:
        per_ballot = server_cpu / len(latencies) * 1000
        parts = f" (server {cpu_parts[0]:.1f} s, database {cpu_parts[1]:.1f} s)" if len(cpu_parts) > 1 else ""
        print(f"server{' + database' if len(pids) > 1 else ''} CPU: {server_cpu:.1f} s{parts}, {per_ballot:.2f} ms per ballot (at most {2000 / per_ballot:,.0f} "
              f"ballots/s on 2 fully used cores); host speed: 10M Python additions take "
              f"{python_loop_seconds():.2f} s")
    if failures:
        print("first refusal:", failures[0])


if __name__ == "__main__":
    main()
