"""Offline verification of an auditor bundle: ``cloudseal audit verify BUNDLE --root root.crt``.

Reads only the bundle (:mod:`voting.bundle` describes it) and the root certificate it is
given; imports no database, settings or HSM code. Nothing in the bundle is trusted unless it
chains to that root: the manifest is believed because the platform seal sealed it, a tree
head because the seal signed it, a ballot because its holder signed it and the OCSP response
kept at receipt (signed by an OCSP signer the issuing CA certified) says the certificate was
good then. The checks, in order (:data:`voting.audit_report.CHECKS`):

1. ``manifest``: every file's SHA-256 and size equal the manifest's; nothing unlisted;
2. ``certificates``: the issuing CA chains to the given root, the OCSP signers and platform
   seals to the issuing CA (with the right usages), every CRL is signed by one of those CAs;
3. ``manifest_seal``: the platform seal (valid and unrevoked then) signed the manifest;
4. ``tree_heads``: every signed tree head verifies under the seal it names;
5. ``log``: the leaves recomputed from the ballot and revocation records
   (:mod:`voting.log_records`), in ``leaf_index`` order without gap, give every tree head's
   root (an incremental frontier: O(n) in all) and the last head covers the whole log;
6. ``signatures``: every ballot's and revocation's CMS signs its payload, the signer chains
   to the root and was good at receipt by the kept OCSP response (see
   :mod:`voting.audit_trust`) and is the investor the register matches to the holder; a
   submission without such evidence must not count;
7. ``payloads``: each payload is canonical, names this meeting and the holder the log
   names, who is on the register; a ballot's choices fit the agenda and its void elections
   are the ones the platform recorded;
8. ``rules``: :func:`voting.rules.apply_evoting_rules` (first received counts, a timely
   revocation lets the next ballot count, late ones are refused, a proxy overrides, an
   in-person e-voter keeps the e-vote) gives every status the platform gave;
9. ``tally``: :func:`voting.tally.tally_meeting` over the register, the counted ballots, the
   room and the recusals gives every figure of the frozen tally.

The report names the first disagreement in that order (the ballot by leaf index and
holder, the tree head by size, the figure by item and field) with what was expected and
found; later checks are skipped. A signer's certificate must name (subject serialNumber) the
investor the sealed register matches to the holder; the match itself was made by a keyed
hash the bundle does not carry (:data:`voting.audit_report.HOLDER_BINDING_NOTE`, printed
with every report).

Speed: signature checks (one CMS verification per ballot, each signer's path and each OCSP
response checked once) and tree-head seals run in a process pool, by chunks; the main process
reads, hashes and folds the log meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from voting import bundle_format as fmt
from voting import merkle
from voting.agenda import AgendaItem
from voting.audit_checks import Context, SubmissionChecker, check_jobs, init_worker, run_chunk
from voting.audit_read import (base64_bytes, count, merged_log, read_ocsp_responses, read_register, read_room,
                               string, tree_heads, utc_time)
from voting.audit_recount import LoggedBallot, LoggedRevocation, Room, apply_rules, compare_tally, recount
from voting.audit_report import CHECKS, FAILED, HOLDER_BINDING_NOTE, PASSED, SKIPPED, AuditReport, CheckOutcome
from voting.audit_report import Disagreement
from voting.audit_trust import TrustError, TrustStore, describe, fingerprint
from voting.log_records import log_entry, parse_log_time, revocation_log_entry
from voting.thresholds import configured_rules

Progress = Callable[[str, int, int], None]
MAX_MANIFEST_BYTES = 64 << 20
JOBS_PER_CHUNK = 256
_REQUIRED = (fmt.REGISTER, fmt.BALLOTS, fmt.REVOCATIONS, fmt.OCSP_RESPONSES, fmt.TREE_HEADS, fmt.ROOM, fmt.TALLY,
             fmt.ISSUING_PEM, fmt.OCSP_SIGNERS_PEM, fmt.SEALS_PEM)


def load_root(data: bytes) -> x509.Certificate:
    """The root certificate from PEM or DER bytes (``ValueError`` if it is neither)."""
    return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)


def verify_bundle(bundle: str | Path | bytes | IO[bytes], root: x509.Certificate, *, workers: int | None = None,
                  progress: Progress | None = None) -> AuditReport:
    """Verify an auditor bundle (a path, its bytes or a binary file) against ``root``.

    ``workers`` processes check signatures (default: up to 2, one per core; 0 checks in this
    process). ``progress(step, done, total)`` is called on the long steps. Never raises for a
    bad bundle: every problem is a disagreement in the report.
    """
    started = time.perf_counter()
    source = io.BytesIO(bundle) if isinstance(bundle, (bytes, bytearray)) else bundle
    count = min(2, os.cpu_count() or 1) if workers is None else max(0, workers)
    run = _Verification(root, count, progress or (lambda step, done, total: None))
    try:
        with zipfile.ZipFile(source) as archive:
            run.archive = archive
            run.run()
    except _Stop:
        pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        run.fail("manifest", "bundle", f"not a readable ZIP archive ({type(exc).__name__}: {exc})")
    report = run.report()
    report.seconds = time.perf_counter() - started
    return report


class _Stop(Exception):
    """A disagreement after which nothing further can be checked."""


class _Verification:
    """One run of the checks over one archive; fills an :class:`AuditReport`."""

    def __init__(self, root: x509.Certificate, workers: int, progress: Progress) -> None:
        self.root, self.workers, self.progress = root, workers, progress
        self.archive: zipfile.ZipFile
        self.failures: list[Disagreement] = []
        self.details: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.meeting: dict[str, Any] = {}
        self.figures: dict[str, Any] | None = None

    # Reporting ---------------------------------------------------------------------------
    def fail(self, check: str, where: str, message: str, *, expected: str | None = None, found: str | None = None,
             leaf: int = -1) -> None:
        self.failures.append(Disagreement(check, where, message, expected, found, leaf))

    def stop(self, check: str, where: str, message: str, **figures: str | None) -> _Stop:
        self.fail(check, where, message, **figures)  # type: ignore[arg-type]
        return _Stop()

    def failed_before(self, check: str) -> bool:
        order = [key for key, _ in CHECKS]
        return any(order.index(f.check) < order.index(check) for f in self.failures)

    def report(self) -> AuditReport:
        ordered = sorted(enumerate(self.failures), key=lambda pair: (*pair[1].order, pair[0]))
        first = ordered[0][1] if ordered else None
        keys = [key for key, _ in CHECKS]
        failed_at = keys.index(first.check) if first is not None else len(keys)
        checks = [CheckOutcome(key, title, PASSED if n < failed_at else FAILED if n == failed_at else SKIPPED,
                               self.details.get(key, "") if n < failed_at else "")
                  for n, (key, title) in enumerate(CHECKS)]
        more = [d for _, d in ordered[1:] if first is not None and d.check == first.check][:20]
        return AuditReport(meeting=self.meeting, checks=checks, disagreement=first, more_disagreements=more,
                           counts=self.counts, figures=self.figures if first is None else None,
                           notes=[HOLDER_BINDING_NOTE])

    # 1. Manifest ---------------------------------------------------------------------------
    def run(self) -> None:
        self.check_manifest()
        self.check_certificates()
        self.check_manifest_seal()
        self.load_data()
        self.stream_log()
        if not self.failed_before("rules"):
            self.check_rules()
        if not self.failed_before("tally"):
            self.check_tally()

    def check_manifest(self) -> None:
        names = set(self.archive.namelist())
        if fmt.MANIFEST not in names or self.archive.getinfo(fmt.MANIFEST).file_size > MAX_MANIFEST_BYTES:
            raise self.stop("manifest", fmt.MANIFEST, "the bundle has no (readable) manifest")
        self.manifest_bytes = self.archive.read(fmt.MANIFEST)
        try:
            manifest = json.loads(self.manifest_bytes)
            files = manifest["files"]
            if manifest.get("format") != fmt.FORMAT:
                raise self.stop("manifest", fmt.MANIFEST, "not a bundle of a known format",
                                expected=fmt.FORMAT, found=str(manifest.get("format")))
            specs = {string(name, "a file name"): (string(spec["sha256"], "sha256"), count(spec["bytes"], "bytes"))
                     for name, spec in files.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.stop("manifest", fmt.MANIFEST, f"cannot be read ({exc})") from None
        for name in _REQUIRED:
            if name not in specs:
                raise self.stop("manifest", name, "a required file is not listed in the manifest")
        for name in sorted(names - specs.keys() - {fmt.MANIFEST, fmt.MANIFEST_SEAL}):
            raise self.stop("manifest", name, "the bundle holds a file the manifest does not list")
        total, done = sum(size for _, size in specs.values()), 0
        for name, (sha256, size) in sorted(specs.items()):
            if name not in names:
                raise self.stop("manifest", name, "listed in the manifest but missing from the bundle")
            digest, actual = hashlib.sha256(), 0
            with self.archive.open(name) as member:
                while chunk := member.read(1 << 20):
                    actual += len(chunk)
                    if actual > size:
                        break
                    digest.update(chunk)
                    self.progress("hashing", done + actual, total)
            if actual != size:
                raise self.stop("manifest", name, "its size differs from the manifest's", expected=str(size),
                                found=f"{actual}" if actual <= size else f"more than {size}")
            if digest.hexdigest() != sha256:
                raise self.stop("manifest", name, "its SHA-256 differs from the manifest's",
                                expected=sha256, found=digest.hexdigest())
            done += size
        self.files = specs
        self.details["manifest"] = f"{len(specs)} files, {total:,} bytes"
        self.read_meeting(manifest)

    def read_meeting(self, manifest: dict[str, Any]) -> None:
        try:
            meeting = manifest["meeting"]
            self.meeting_id = string(meeting["public_id"], "meeting.public_id")
            self.opens_at, self.closes_at = utc_time(meeting["opens_at"]), utc_time(meeting["closes_at"])
            self.sealed_at = parse_log_time(manifest["sealed_at"])
            self.agenda = [AgendaItem(string(i["key"], "key"), i["kind"], string(i["title"], "title"), seats=i["seats"],
                                      candidates=tuple(c["key"] for c in i["candidates"]), article=i.get("article"))
                           for i in manifest["agenda"]]
            self.rules = configured_rules(bool(manifest["rules"]["public_company"]), manifest["rules"]["thresholds"])
            self.register_holders = count(meeting.get("register_holders", 0), "meeting.register_holders")
            self.lines = {name: count(n, name) for name, n in manifest["counts"]["lines"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError) as exc:
            raise self.stop("manifest", fmt.MANIFEST, f"the meeting, agenda or rules cannot be read ({exc})") from None
        self.meeting = {"public_id": self.meeting_id, "title": meeting.get("title"),
                        "issuer": meeting.get("issuer", {}), "meeting_date": meeting.get("meeting_date"),
                        "opens_at": meeting["opens_at"], "closes_at": meeting["closes_at"],
                        "frozen_at": meeting.get("frozen_at"), "register_sha256": meeting.get("register_sha256"),
                        "agenda": [{"key": i.item_id, "kind": i.kind, "title": i.title} for i in self.agenda]}

    # 2-3. Certificates and the manifest's seal ------------------------------------------------
    def certificates(self, name: str) -> list[x509.Certificate]:
        data = self.archive.read(name) if name in self.files else b""
        if not data.strip():
            return []
        try:
            return x509.load_pem_x509_certificates(data)
        except (ValueError, TypeError, x509.InvalidVersion):
            raise self.stop("certificates", name, "cannot be read as PEM certificates") from None

    def check_certificates(self) -> None:
        bundle_root = self.certificates(fmt.ROOT_PEM)
        crl_names = sorted(n for n in self.files if n.startswith(fmt.CRL_DIRECTORY))
        try:
            crls = [x509.load_der_x509_crl(self.archive.read(n)) for n in crl_names]
            self.trust = TrustStore(self.root, issuing=self.certificates(fmt.ISSUING_PEM),
                                    ocsp_signers=self.certificates(fmt.OCSP_SIGNERS_PEM),
                                    seals=self.certificates(fmt.SEALS_PEM), crls=crls, crl_names=crl_names,
                                    bundle_root=bundle_root[0] if bundle_root else None)
        except TrustError as exc:
            raise self.stop("certificates", "certificates", str(exc)) from None
        except (ValueError, TypeError, x509.InvalidVersion) as exc:
            raise self.stop("certificates", "certificates", f"a certificate or CRL cannot be read ({exc})") from None
        if bundle_root and fingerprint(bundle_root[0]) != fingerprint(self.root):
            raise self.stop("certificates", fmt.ROOT_PEM, "the bundle's root is not the given root",
                            expected=fingerprint(self.root).hex(), found=fingerprint(bundle_root[0]).hex())
        for ca in self.trust.cas:
            if not self.trust.crl_count.get(fingerprint(ca)):
                raise self.stop("certificates", describe(ca), "the bundle holds no CRL of this CA, so the status "
                                "of the certificates it issued cannot be established")
        self.details["certificates"] = (f"{len(self.trust.issuing)} issuing CA, {len(self.trust.ocsp_signers)} OCSP "
                                        f"signer(s), {len(self.trust.seals)} seal(s), {len(crls)} CRLs")

    def check_manifest_seal(self) -> None:
        if fmt.MANIFEST_SEAL not in self.archive.namelist():
            raise self.stop("manifest_seal", fmt.MANIFEST_SEAL, "the bundle has no manifest seal")
        try:
            seal = json.loads(self.archive.read(fmt.MANIFEST_SEAL))
            serial, signature = string(seal["seal_serial"], "seal_serial"), base64_bytes(seal["signature"], "signature")
        except (ValueError, KeyError, TypeError) as exc:
            raise self.stop("manifest_seal", fmt.MANIFEST_SEAL, f"cannot be read ({exc})") from None
        problem = self.trust.seal_problem(serial, self.sealed_at)
        if problem is None and not self.trust.seal_verifies(serial, signature, self.manifest_bytes):
            problem = "the platform seal's signature over manifest.json does not verify"
        if problem is not None:
            raise self.stop("manifest_seal", fmt.MANIFEST, problem)
        self.details["manifest_seal"] = f"sealed {self.sealed_at.isoformat()} by seal {serial}"

    # Data read before the log ------------------------------------------------------------------
    def load_data(self) -> None:
        self.register, self.investors = read_register(self.archive, self.fail)
        if len(self.register) != self.register_holders:
            self.fail("payloads", fmt.REGISTER, "the register does not hold the meeting's number of holders",
                      expected=str(self.register_holders), found=str(len(self.register)))
        self.ocsp = read_ocsp_responses(self.archive, self.fail)
        try:
            self.room = read_room(self.archive.read(fmt.ROOM))
        except (ValueError, KeyError, TypeError) as exc:
            self.fail("rules", fmt.ROOM, f"the host's entries cannot be read ({exc})")
            self.room = Room()
        try:
            self.frozen = json.loads(self.archive.read(fmt.TALLY))
            if not isinstance(self.frozen, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.fail("tally", fmt.TALLY, f"the frozen tally cannot be read ({exc})")
            self.frozen = {}

    # 4-7. The log, streamed; signatures in the pool ----------------------------------------------
    def stream_log(self) -> None:
        holders = {no: (entry.votable_shares, entry.nominee, self.investors.get(no))
                   for no, entry in self.register.items()}
        context = Context(SubmissionChecker(self.trust), self.meeting_id, self.agenda, holders)
        pool = ProcessPoolExecutor(self.workers, initializer=init_worker, initargs=(
            self.trust.state(), self.meeting_id, self.agenda, holders)) if self.workers else None
        pending: deque[Future[tuple[list[Disagreement], set[str], int]]] = deque()
        signers: set[str] = set()
        sent, checked = 0, 0

        def collect(result: tuple[list[Disagreement], set[str], int]) -> None:
            nonlocal checked
            self.failures.extend(result[0])
            signers.update(result[1])
            checked += result[2]

        batch: list[tuple[Any, ...]] = []  # filled by fold_log, emptied (in place) here

        def dispatch(force: bool = False) -> None:
            nonlocal sent
            if batch and (force or len(batch) >= JOBS_PER_CHUNK):
                jobs = batch.copy()
                batch.clear()
                sent += len(jobs)
                if pool is None:
                    collect(check_jobs(context, jobs))
                else:
                    pending.append(pool.submit(run_chunk, jobs))
                    while len(pending) > 4 * self.workers:
                        collect(pending.popleft().result())

        try:
            self.fold_log(batch, dispatch)
            dispatch(force=True)
            while pending:
                collect(pending.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        expected = self.counts["ballots"] + self.counts["revocations"] + self.counts["tree_heads"]
        if not sent == checked == expected:  # every record is checked once: anything else is a bug here
            raise RuntimeError(f"{expected} records, {sent} sent to the checks, {checked} checked")
        self.counts.update(signers=len(signers), records_checked=checked)
        listed = {fingerprint(c).hex() for c in self.certificates(fmt.INVESTORS_PEM)}
        if not self.failed_before("payloads") and listed != signers:
            self.fail("signatures", fmt.INVESTORS_PEM, "does not hold exactly the certificates that signed the "
                      f"ballots and revocations ({len(signers - listed)} missing, {len(listed - signers)} others)",
                      expected=str(len(signers)), found=str(len(listed)))
        self.details["signatures"] = (f"{self.counts['ballots'] + self.counts['revocations']:,} signatures by "
                                      f"{len(signers):,} signers; {len(self.ocsp):,} OCSP responses")
        self.details["payloads"] = f"{len(self.register):,} holders on the register"

    def fold_log(self, batch: list[tuple[Any, ...]], dispatch: Callable[[], None]) -> None:
        """Recompute the leaves in order, compare every tree head's root, queue the checks."""
        frontier, heads = merkle.MerkleFrontier(), tree_heads(self.archive, self.fail)
        head, matched, log_broken = next(heads, None), 0, False
        total = sum(self.lines.get(n, 0) for n in (fmt.BALLOTS, fmt.REVOCATIONS, fmt.TREE_HEADS)) or 1
        done, counts = 0, {"ballots": 0, "revocations": 0, "tree_heads": 0}
        self.ballots: list[LoggedBallot] = []
        self.revocations: list[LoggedRevocation] = []
        for leaf, job in merged_log(self.archive, self.ocsp, self.fail):
            kind, holder, received_at, payload, cms, extra = job[0], job[2], job[3], job[4], job[5], job[8]
            batch.append(job[:8])
            payload_sha256, cms_sha256 = hashlib.sha256(payload).hexdigest(), hashlib.sha256(cms).hexdigest()
            if kind == "b":
                counts["ballots"] += 1
                self.ballots.append(LoggedBallot(leaf, holder, received_at, extra, payload, payload_sha256))
                entry = log_entry(self.meeting_id, holder, payload_sha256, cms_sha256, received_at)
            else:
                counts["revocations"] += 1
                self.revocations.append(LoggedRevocation(leaf, holder, received_at, extra))
                entry = revocation_log_entry(self.meeting_id, holder, payload_sha256, cms_sha256, extra, received_at)
            done += 1
            if leaf is not None and not log_broken:
                if leaf != frontier.size:
                    self.fail("log", f"leaf {frontier.size}", f"missing or out of order: the next record is leaf {leaf}"
                              if leaf > frontier.size else f"recorded twice: the next record is leaf {leaf} again",
                              leaf=frontier.size)
                    log_broken = True
                frontier.append(merkle.leaf_hash(entry))
                while head is not None and head[1] <= frontier.size and not log_broken:
                    log_broken = self.compare_head(head, frontier, matched)
                    matched = head[1]
                    batch.append(head)
                    counts["tree_heads"] += 1
                    head = next(heads, None)
            dispatch()
            if done % 1024 == 0:
                self.progress("log and signatures", done + counts["tree_heads"], total)
        for head in ([head] if head is not None else []) + list(heads):
            counts["tree_heads"] += 1
            batch.append(head)
            if not log_broken and head[1] > frontier.size:
                self.fail("log", f"tree head of size {head[1]}", f"the log holds only {frontier.size} leaves",
                          leaf=head[1])
                log_broken = True
            dispatch()
        if not log_broken and matched != frontier.size:
            self.fail("log", f"leaves {matched} to {frontier.size - 1}", "no sealed tree head covers them",
                      leaf=matched)
        self.progress("log and signatures", total, total)
        self.counts.update(counts, log_size=frontier.size)
        self.details["tree_heads"] = f"{counts['tree_heads']:,} tree heads"
        self.details["log"] = (f"{frontier.size:,} leaves ({counts['ballots']:,} ballots, "
                               f"{counts['revocations']:,} revocations), root {frontier.root().hex()[:16]}…")

    def compare_head(self, head: tuple[Any, ...], frontier: merkle.MerkleFrontier, matched: int) -> bool:
        """Whether the tree head ``head`` (of the frontier's size) disagrees with the log."""
        size, sealed = head[1], head[2]
        if size != frontier.size:
            return False  # a head of a smaller size than reached is a size-order problem, reported already
        root = frontier.root()
        if root == sealed:
            return False
        span = f"leaf {size - 1}" if size - 1 == matched else f"one of leaves {matched} to {size - 1}"
        suspects = [b.where() for b in self.ballots[-3:] if matched <= b.leaf < size] + \
                   [r.where() for r in self.revocations[-3:] if r.leaf is not None and matched <= r.leaf < size]
        self.fail("log", f"tree head of size {size}", f"the root recomputed from the records differs from the sealed "
                  f"root: {span} is not what was logged" + (f" ({'; '.join(suspects)})" if suspects else ""),
                  expected=sealed.hex(), found=root.hex(), leaf=size - 1)
        return True

    # 8-9. Rules and tally ----------------------------------------------------------------------
    def check_rules(self) -> None:
        problems, self.counted = apply_rules(self.ballots, self.revocations, self.room, self.opens_at, self.closes_at)
        self.failures.extend(problems)
        at_meeting = [item.item_id for item in self.agenda if not item.electronically_votable]
        if sorted(self.room.items_added) != sorted(at_meeting):
            self.fail("rules", fmt.ROOM, "the items added at the meeting are not the agenda's extempore motions and "
                      "amendments", expected=", ".join(at_meeting), found=", ".join(self.room.items_added))
        statuses: dict[str, int] = {}
        for ballot in self.ballots:
            statuses[ballot.status] = statuses.get(ballot.status, 0) + 1
        self.counts.update({f"ballots_{k}": v for k, v in statuses.items()})
        self.details["rules"] = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(statuses.items())) or \
            "no ballots"

    def check_tally(self) -> None:
        result = recount(self.register, self.agenda, self.counted, self.room, self.rules)
        if isinstance(result, Disagreement):
            self.failures.append(result)
            return
        figures = result.as_dict()
        self.failures.extend(compare_tally(self.frozen, figures))
        self.figures = figures
        self.details["tally"] = f"{len(result.items)} items, {len(self.counted):,} e-votes counted"
