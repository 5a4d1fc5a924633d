"""Offline verification of an auditor bundle of 100,000 ballots. Target: under 60 s on 2 cores.

The bundle is real, built as cheaply as honesty allows: a few hundred investors are enrolled
through the RA (HSM-held P-256 keys, certificates from the issuing CA, pre-signed OCSP
answers) and registered as holders of one meeting. Each ballot is canonical JSON signed as a
detached CAdES-BES CMS by its holder's HSM key; the OCSP response kept as evidence is the CA's
own for that certificate (``voting.evidence.status_evidence``); every log append gets a tree
head sealed by the platform seal in the HSM. Instead of sending 100,000 ballots through the
service (``bench/ballots.py`` measures that path), the bundle is written from memory with the
same :class:`voting.bundle_format.BundleWriter` and the same PKI export as the service.

The CMS bytes come from per-signer templates of ``signing.cms.build_signed_attributes`` and
``assemble_detached_cms`` with the digest, signing time and signature put in place (asn1crypto
takes ~30 ms to encode each one); every 5,000th ballot is asserted byte-identical to what
those functions produce. Statuses follow the Company Act rules: every holder's first ballot
counts and later ones are superseded, except that every 25th holder revokes after the first
ballot and their next one counts. The verifier then runs every check on the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path

from _support import fresh_platform, python_loop_seconds, report
from cms_template import CmsTemplate
from ballots import setup
from cryptography import x509
from sqlalchemy import select
from sqlmodel import Session

from voting import ballot_log, bundle, merkle, service
from voting import bundle_format as fmt
from voting.audit_verify import verify_bundle
from voting.ballot import build_ballot, check_choices, parse_ballot, typed_choices
from voting.evidence import status_evidence
from voting.log_records import build_revocation, log_entry, revocation_log_entry, tree_head_statement
from voting.models import Meeting
from voting.rules import ReceivedBallot, Revocation, apply_evoting_rules
from voting.tally import PresentHolder, RegisterEntry, tally_meeting

TARGET_BALLOTS, TARGET_SECONDS = 100_000, 60.0
SHARES = 1000
CHOICES = [{"1": "CFOR", "2": "CFOR", "3": {"allocations": {"C1": 2000}}},
           {"1": "CAGS", "2": "CFOR", "3": {"allocations": {"C2": 1000, "C3": 1000}}},
           {"1": "ABST", "2": "CAGS"},
           {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 1500, "C3": 501}}}]  # over-allocated: void


def _reference(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value)


def build(platform, investors: int, count: int, path: Path) -> dict[str, int]:
    """Write the bundle of ``count`` ballots by ``investors`` holders to ``path``."""
    meetings, signers = setup(platform, investors, 1)
    rng = random.Random(11)
    with Session(platform.engine) as session:
        meeting = session.execute(select(Meeting).where(Meeting.public_id == meetings[0])).scalar_one()
        agenda = service.agenda_of(service.agenda_rows(session, meeting.id or 0))
        templates = [CmsTemplate(certificate, chain, key) for _, key, certificate, chain, _ in signers]
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=1)
        evidence = [status_evidence(session, platform.pki, format(t.certificate.serial_number, "x"), start)
                    for t in templates]
        session.commit()
        writer = fmt.BundleWriter(path)
        with writer.lines(fmt.REGISTER) as out:
            for holder_no, _, certificate, *_ in signers:
                out.record(fmt.holder_record(holder_no, SHARES, 0, False, _reference(certificate)))
        frontier, heads, revocations = merkle.MerkleFrontier(), [], []
        received, rule_ballots, rule_revocations, payloads = start, [], [], {}
        ocsp = [writer.add_ocsp(der) for der in evidence]
        elections = {item.item_id for item in agenda if item.is_election}

        def log(entry: bytes, at: dt.datetime) -> None:
            frontier.append(merkle.leaf_hash(entry))
            issued = at + dt.timedelta(microseconds=50)
            signature, serial = ballot_log.seal(session, platform.pki, tree_head_statement(
                meeting.public_id, frontier.size, frontier.root(), issued))
            heads.append(fmt.tree_head_record(tree_size=frontier.size, root_hash=frontier.root(), issued_at=issued,
                                              signature=signature, seal_serial=serial))

        expected: dict[str, str] = {}
        with writer.lines(fmt.BALLOTS) as ballot_lines:
            for k in range(count):
                n, rounds = k % investors, k // investors
                holder_no, revokes = signers[n][0], n % 25 == 0
                received += dt.timedelta(milliseconds=1)
                payload = build_ballot(meeting.public_id, holder_no, rng.choice(CHOICES), f"nonce-{k:016d}", received)
                cms = templates[n].sign(payload, received, check=k % 5000 == 0)
                statuses = check_choices(parse_ballot(payload), agenda, nominee=False,
                                         votable_shares={i.item_id: SHARES for i in agenda})
                ballot_id, digest = f"{frontier.size:012d}", hashlib.sha256(payload).hexdigest()
                status = ("revoked" if rounds == 0 else "counted" if rounds == 1 else "superseded") if revokes else \
                    ("counted" if rounds == 0 else "superseded")
                ballot_lines.record(fmt.ballot_record(
                    leaf_index=frontier.size, holder_no=holder_no, received_at=received, status=status, payload=payload,
                    cms=cms, ocsp_sha256=ocsp[n], voided_items={i: s for i, s in statuses.items() if s != "ok"}))
                expected[ballot_id] = status
                rule_ballots.append(ReceivedBallot(ballot_id, holder_no, received))
                if status == "counted":
                    payloads[holder_no] = payload
                log(log_entry(meeting.public_id, holder_no, digest, hashlib.sha256(cms).hexdigest(), received), received)
                if rounds == 0 and revokes:  # this holder revokes the first ballot; the next one counts
                    received += dt.timedelta(milliseconds=1)
                    payload = build_revocation(meeting.public_id, holder_no, f"revoke-{k:012d}", received)
                    cms = templates[n].sign(payload, received)
                    rule_revocations.append(Revocation(holder_no, ballot_id, received))
                    revocations.append(fmt.revocation_record(
                        leaf_index=frontier.size, holder_no=holder_no, received_at=received, payload=payload, cms=cms,
                        revoked=[digest], ocsp_sha256=ocsp[n]))
                    log(revocation_log_entry(meeting.public_id, holder_no, hashlib.sha256(payload).hexdigest(),
                                             hashlib.sha256(cms).hexdigest(), [digest], received), received)
                if k % 10_000 == 0:
                    print(f"  built {k:,} ballots", flush=True)
        outcome = apply_evoting_rules(rule_ballots, rule_revocations, [], meeting.closes_at)
        assert dict(outcome.ballot_status) == expected, "the planned statuses differ from the rules"
        with writer.lines(fmt.REVOCATIONS) as out:
            for record in revocations:
                out.record(record)
        with writer.lines(fmt.TREE_HEADS) as out:
            for record in heads:
                out.record(record)
        crls = bundle.write_pki(session, writer, meeting, {format(t.certificate.serial_number, "x") for t in templates})
        writer.add_json(fmt.ROOM, {"attendance": [], "recusals": [], "items_added_at_meeting": []})
        present = [PresentHolder(holder, "evote", typed_choices(parse_ballot(payload).choices, elections))
                   for holder, payload in payloads.items()]
        result = tally_meeting([RegisterEntry(s[0], SHARES) for s in signers], agenda, present,
                               service.meeting_rules(meeting))
        writer.add(fmt.TALLY, json.dumps(result.as_dict(), sort_keys=True).encode())
        counts = {"holders": investors, "ballots": count, "revocations": len(revocations), "tree_heads": len(heads),
                  "log_size": frontier.size, "signers": investors, "crls": crls}
        writer.finish({"meeting": bundle.meeting_json(session, meeting),
                       "agenda": bundle.agenda_json(session, meeting.id or 0),
                       "rules": {"public_company": meeting.public_company, "thresholds": {}}, "counts": counts},
                      lambda data: ballot_log.seal(session, platform.pki, data), received)
        root = platform.pki.ca_certificate(platform.pki.load_ca(session, "root"))
    return {**counts, "root": root}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ballots", type=int, default=TARGET_BALLOTS)
    parser.add_argument("--investors", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="signature-checking processes")
    parser.add_argument("--keep", type=Path, default=None, help="also keep the bundle at this path")
    args = parser.parse_args()
    platform, workdir = fresh_platform()
    path = args.keep or Path(tempfile.mkdtemp(prefix="cloudseal-audit-")) / "bundle.zip"
    started = time.perf_counter()
    built = build(platform, args.investors, args.ballots, path)
    platform.close()
    print(f"  bundle built in {time.perf_counter() - started:.1f} s: {os.path.getsize(path) / 2**20:,.1f} MiB, "
          f"{built['ballots']:,} ballots, {built['revocations']} revocations, {built['tree_heads']:,} tree heads")
    started = time.perf_counter()
    verdict = verify_bundle(path, built["root"], workers=args.workers)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if not verdict.ok:
        print("VERIFICATION FAILED:", verdict.disagreement)
    report("bench/audit.py offline bundle verification", args.ballots / seconds, TARGET_BALLOTS / TARGET_SECONDS,
           "ballots/s", f"{args.ballots:,} ballots verified in {seconds:.1f} s (target: {TARGET_BALLOTS:,} in under "
           f"{TARGET_SECONDS:.0f} s) with {args.workers} workers; every check passed: {verdict.ok}")
    print(f"host speed: 10M Python additions take {python_loop_seconds():.2f} s")
    if args.keep is None:
        path.unlink()


if __name__ == "__main__":
    main()
