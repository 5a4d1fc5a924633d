"""The checks of the auditor's worker processes: one signed submission, one tree head.

Each ballot or revocation is checked as the platform checked it on receipt, at the moment
of receipt (:class:`SubmissionChecker`): the CMS signs the payload, the signer chains to the
given root and may sign, every certificate of the path was valid and not revoked by a CRL of
the bundle then, and the OCSP response kept at receipt says *good* (:mod:`voting.audit_trust`).
Then its payload: canonical, naming this meeting and the holder its log record names, who is
on the register, with choices that fit the agenda. A tree head must verify under the seal it
names. Each signer's path is checked once (cached by certificate fingerprint), so the cost is
one CMS verification per submission.

:func:`check_jobs` runs a chunk of these, in a worker process (:func:`init_worker`,
:func:`run_chunk`) or in the caller's; it returns the disagreements, never raises.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from core.errors import AppError
from signing.cms import chain_to, verify_cms_signature
from signing.cms_parse import CmsError, ParsedCms, parse_detached_cms
from signing.status import GOOD
from voting.agenda import AgendaItem
from voting.audit_report import Disagreement
from voting.audit_trust import TrustState, TrustStore, describe, fingerprint, may_sign, valid_at
from voting.ballot import BallotError, check_choices, parse_ballot
from voting.log_records import parse_revocation, tree_head_statement


class SubmissionError(Exception):
    """A signed submission that fails a check; ``code`` names which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SubmissionChecker:
    """The acceptance checks of a ballot or revocation at its receipt, against a trust store."""

    def __init__(self, trust: TrustStore) -> None:
        self.trust = trust
        self._paths: dict[bytes, list[x509.Certificate] | SubmissionError] = {}

    def check(self, payload: bytes, cms: bytes, received_at: dt.datetime, evidence: bytes | None) -> x509.Certificate:
        """Repeat the acceptance checks of a ballot or revocation at its receipt (module
        docstring); return the signer's certificate or raise :class:`SubmissionError`."""
        try:
            parsed = parse_detached_cms(cms)
            verify_cms_signature(parsed, hashlib.sha256(payload).digest())
        except CmsError as exc:
            raise SubmissionError(exc.code, f"the CMS does not sign the payload ({exc.code}: {exc.message})") from None
        signer = parsed.signer_certificate
        signer_key = fingerprint(signer)
        path = self._paths.get(signer_key)
        if path is None:
            path = self._paths[signer_key] = self._signer_path(parsed)
        if isinstance(path, SubmissionError):
            raise path
        for certificate in path:
            if not valid_at(certificate, received_at):
                raise SubmissionError("not_valid_at_receipt", f"{describe(certificate)} was not valid at the "
                                      f"receipt ({received_at.isoformat()})")
        for certificate, issuer in zip(path, path[1:]):
            entry = self.trust.revoked_entry(certificate, issuer)
            if entry is not None and entry.at <= received_at:
                raise SubmissionError(entry.status, f"a CRL of the bundle lists {describe(certificate)} as "
                                      f"{entry.reason} since {entry.at.isoformat()}, before the receipt")
        status = self.trust.status_at_receipt(signer, path[1], evidence, received_at)
        if status.status != GOOD:
            detail = status.detail or f"says {status.status}" + (
                f" (since {status.revocation_time.isoformat()}, {status.revocation_reason})"
                if status.revocation_time else "")
            raise SubmissionError(f"evidence_{status.status}", f"the OCSP response kept at receipt {detail}")
        return signer

    def _signer_path(self, parsed: ParsedCms) -> list[x509.Certificate] | SubmissionError:
        try:
            with_cas = dataclasses.replace(parsed, certificates=parsed.certificates + tuple(self.trust.issuing))
            path = chain_to(with_cas, [self.trust.root])
        except CmsError as exc:
            return SubmissionError("untrusted_chain", f"the signer {describe(parsed.signer_certificate)} does not "
                                   f"chain to the given root ({exc.message})")
        if len(path) < 2 or not may_sign(path[0]):
            return SubmissionError("untrusted_chain", f"{describe(path[0])} may not sign documents")
        return path


@dataclass
class Context:
    """What a signature worker needs: the trust store, the meeting, the agenda, the register."""

    checker: SubmissionChecker
    meeting: str
    agenda: list[AgendaItem]
    holders: dict[str, tuple[int, bool, str | None]]  # votable shares, nominee, matched investor reference


def investor_reference(certificate: x509.Certificate) -> str | None:
    """The investor reference an investor certificate carries as its subject serialNumber."""
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(values[0].value) if len(values) == 1 else None


_CONTEXT: Context | None = None


def init_worker(state: TrustState, meeting: str, agenda: list[AgendaItem],
                holders: dict[str, tuple[int, bool, str | None]]) -> None:
    """Set up a worker process: its own trust store, rebuilt (and re-admitted) from ``state``."""
    global _CONTEXT
    _CONTEXT = Context(SubmissionChecker(TrustStore.from_state(state)), meeting, agenda, holders)


def run_chunk(jobs: list[tuple[Any, ...]]) -> tuple[list[Disagreement], set[str], int]:
    """:func:`check_jobs` in a worker process set up by :func:`init_worker`."""
    assert _CONTEXT is not None, "the worker was not initialised"
    return check_jobs(_CONTEXT, jobs)


def check_jobs(context: Context, jobs: list[tuple[Any, ...]]) -> tuple[list[Disagreement], set[str], int]:
    """Check a chunk of submissions (``b``, ``r``) and tree heads (``h``); return the
    disagreements found, the signers' certificate fingerprints (hex) and how many jobs were checked."""
    problems: list[Disagreement] = []
    signers: set[str] = set()
    for job in jobs:
        try:
            if job[0] == "h":
                _check_head(context, job, problems)
            else:
                _check_submission(context, job, problems, signers)
        except Exception as exc:  # a record no check anticipated: reported, never raised
            problems.append(Disagreement("signatures", f"record {job[1]}", f"cannot be checked "
                                         f"({type(exc).__name__}: {exc})", leaf=job[1] if job[1] is not None else -1))
    return problems, signers, len(jobs)


def _check_head(context: Context, job: tuple[Any, ...], problems: list[Disagreement]) -> None:
    _, size, root_hash, issued_at, signature, serial = job
    where = f"tree head of size {size} (issued {issued_at.isoformat()})"
    problem = context.checker.trust.seal_problem(serial, issued_at)
    if problem is None and not context.checker.trust.seal_verifies(
            serial, signature, tree_head_statement(context.meeting, size, root_hash, issued_at)):
        problem = "its seal signature does not verify over its statement"
    if problem is not None:
        problems.append(Disagreement("tree_heads", where, problem, leaf=size))


def _check_submission(context: Context, job: tuple[Any, ...], problems: list[Disagreement], signers: set[str]) -> None:
    kind, leaf, holder, received_at, payload, cms, evidence, voided = job
    what = "ballot" if kind == "b" else "revocation"
    where = f"{'unlogged' if leaf is None else f'leaf {leaf}'} ({what} of holder {holder} received " \
            f"{received_at.isoformat()})"
    order = -1 if leaf is None else leaf

    def fail(check: str, message: str, expected: object = None, found: object = None) -> None:
        problems.append(Disagreement(check, where, message, None if expected is None else str(expected),
                                     None if found is None else str(found), order))

    signer: x509.Certificate | None = None
    if isinstance(evidence, str):
        fail("signatures", f"names the OCSP response {evidence}, which the bundle does not hold")
    else:
        try:
            signer = context.checker.check(payload, cms, received_at, evidence)
            signers.add(fingerprint(signer).hex())
        except SubmissionError as exc:
            fail("signatures", exc.message)
    try:
        if kind == "b":
            ballot = parse_ballot(payload)
            named_meeting, named_holder = ballot.meeting_id, ballot.holder_no
        else:
            fields = parse_revocation(payload)
            named_meeting, named_holder = fields["meeting"], fields["holder"]
    except (BallotError, AppError) as exc:
        fail("payloads", f"the payload is not a canonical {what} ({getattr(exc, 'code', '')})")
        return
    if named_meeting != context.meeting:
        fail("payloads", f"the signed {what} names another meeting", expected=context.meeting, found=named_meeting)
    if named_holder != holder:
        fail("payloads", f"the signed {what} names another holder than its log record",
             expected=holder, found=named_holder)
    registered = context.holders.get(holder)
    if registered is None:
        fail("payloads", "the holder is not on the register")
        return
    shares, nominee, investor = registered
    if signer is not None and investor_reference(signer) != investor:
        fail("signatures", "the signer's certificate is not the one of the investor the register matches to "
             "the holder", expected=investor or "no enrolled investor", found=investor_reference(signer))
    if kind == "b":
        try:
            statuses = check_choices(ballot, context.agenda, nominee=nominee,
                                     votable_shares={item.item_id: shares for item in context.agenda})
        except BallotError as exc:
            fail("payloads", f"the choices do not fit the agenda ({exc.code}: {exc.message})")
            return
        void = {item: status for item, status in statuses.items() if status != "ok"}
        if void != voided:
            fail("payloads", "the elections void on this ballot differ from the platform's record",
                 expected=sorted(void), found=sorted(voided))
