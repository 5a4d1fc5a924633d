"""`cloudseal audit verify BUNDLE --root root.crt`: a real bundle verifies, and each kind of
tampering is caught with a message that says where (leaf and holder, tree head, item and field)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from ca import ocsp as ca_ocsp
from cloudseal.cli import app as cli
from core.db import session_scope
from signing.cms_parse import parse_detached_cms
from tests.voting.audit_meeting import FrozenMeeting, frozen_meeting, jsonl, lines, members, repack
from voting import audit_verify
from voting import bundle_format as fmt
from voting.audit_report import FAILED, PASSED, SKIPPED, AuditReport
from voting.audit_verify import verify_bundle
from voting.log_records import parse_log_time

Files = dict[str, bytes]


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> FrozenMeeting:
    return frozen_meeting(tmp_path_factory.mktemp)


def on_disk(frozen: FrozenMeeting, directory: Path, data: bytes | None = None) -> tuple[Path, Path]:
    bundle, root = directory / "bundle.zip", directory / "root.crt"
    bundle.write_bytes(frozen.bundle if data is None else data)
    root.write_bytes(frozen.root_pem)
    return bundle, root


def tampered(frozen: FrozenMeeting, edit: Callable[[Files], None], *, reseal: bool = True) -> bytes:
    """The bundle with ``edit`` applied; ``reseal``: the manifest re-hashed and sealed again
    with the platform's seal (a misbehaving platform), so only the deeper checks can tell."""
    files = members(frozen.bundle)
    edit(files)
    return repack(files, frozen.platform if reseal else None)


def edit_lines(name: str, change: Callable[[list[dict]], None]) -> Callable[[Files], None]:
    def edit(files: Files) -> None:
        records = lines(files[name])
        change(records)
        files[name] = jsonl(records)
    return edit


def verified(data: bytes, frozen: FrozenMeeting, workers: int = 0, root: x509.Certificate | None = None) -> AuditReport:
    return verify_bundle(data, root or frozen.root, workers=workers)


def first(report: AuditReport, check: str) -> str:
    assert not report.ok and report.disagreement is not None
    assert report.disagreement.check == check, str(report.disagreement)
    statuses = {c.key: c.status for c in report.checks}
    assert statuses[check] == FAILED
    keys = list(statuses)
    assert all(statuses[k] == PASSED for k in keys[:keys.index(check)])
    assert all(statuses[k] == SKIPPED for k in keys[keys.index(check) + 1:])
    return str(report.disagreement)


def test_the_bundle_verifies_and_its_recount_is_the_frozen_tally(frozen: FrozenMeeting) -> None:
    report = verified(frozen.bundle, frozen, workers=2)
    assert report.ok, report.disagreement
    assert [c.status for c in report.checks] == [PASSED] * 9
    assert report.figures == json.loads(members(frozen.bundle)[fmt.TALLY])
    assert {k: report.counts[k] for k in ("ballots", "revocations", "tree_heads", "log_size", "signers")} == {
        "ballots": 7, "revocations": 1, "tree_heads": 8, "log_size": 8, "signers": 5}
    assert (report.counts["ballots_counted"], report.counts["ballots_superseded"]) == (4, 1)
    assert any("keyed hash" in note for note in report.notes)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_record_is_checked_whatever_the_chunking(frozen: FrozenMeeting, workers: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_verify, "JOBS_PER_CHUNK", 3)
    report = verified(frozen.bundle, frozen, workers=workers)
    assert report.ok and report.counts["records_checked"] == 7 + 1 + 8 and report.counts["signers"] == 5
    late = verified(with_evidence(frozen, 7, lambda serial, at: None), frozen, workers=workers)
    assert first(late, "signatures").startswith("leaf 7 (ballot of holder H002 received ")


def test_the_cli_verifies_a_bundle_and_exits_0(frozen: FrozenMeeting, tmp_path: Path) -> None:
    bundle, root = on_disk(frozen, tmp_path)
    result = CliRunner().invoke(cli, ["audit", "verify", str(bundle), "--root", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.stdout.count("passed") == 9 and "the bundle verifies" in result.stdout
    assert "Checked against the platform's word" in result.stdout and "elected C1; lots among C2, C3" in result.stdout


def test_the_cli_prints_the_first_disagreement_first_and_exits_1(frozen: FrozenMeeting, tmp_path: Path) -> None:
    bundle, root = on_disk(frozen, tmp_path, tampered(frozen, edit_lines(
        fmt.BALLOTS, lambda records: records[2].update(status="counted"))))
    result = CliRunner().invoke(cli, ["audit", "verify", str(bundle), "--root", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith("FIRST DISAGREEMENT (rules): leaf 2 (ballot of holder H001")
    assert "expected superseded, found counted" in result.stdout and "does NOT verify" in result.stdout


def test_the_cli_needs_a_readable_root(frozen: FrozenMeeting, tmp_path: Path) -> None:
    bundle, root = on_disk(frozen, tmp_path)
    assert CliRunner().invoke(cli, ["audit", "verify", str(bundle)]).exit_code == 2
    root.write_bytes(b"not a certificate")
    result = CliRunner().invoke(cli, ["audit", "verify", str(bundle), "--root", str(root)])
    assert result.exit_code == 2 and "cannot read the root certificate" in result.output


def test_a_byte_changed_anywhere_fails_the_manifest_hashes(frozen: FrozenMeeting) -> None:
    def flip(files: Files) -> None:
        files[fmt.BALLOTS] = files[fmt.BALLOTS].replace(b'"status":"superseded"', b'"status":"supersedeD"')
    message = first(verified(tampered(frozen, flip, reseal=False), frozen), "manifest")
    assert message.startswith("ballots.jsonl: its SHA-256 differs from the manifest's")


def test_hashes_fixed_without_the_platform_seal_fail_the_manifest_seal(frozen: FrozenMeeting) -> None:
    def rehash(files: Files) -> None:
        signature = files[fmt.MANIFEST_SEAL]
        files[fmt.REGISTER] = files[fmt.REGISTER].replace(b'"shares":"700"', b'"shares":"7000"')
        files.update(members(repack(files, frozen.platform)))
        files[fmt.MANIFEST_SEAL] = signature  # the old seal over a new manifest
    message = first(verified(tampered(frozen, rehash, reseal=False), frozen), "manifest_seal")
    assert "signature over manifest.json does not verify" in message


def test_one_byte_of_a_ballot_payload_changed_is_pinned_to_its_leaf(frozen: FrozenMeeting) -> None:
    def change(records: list[dict]) -> None:
        payload = base64.b64decode(records[4]["payload"])
        records[4]["payload"] = base64.b64encode(payload.replace(b'"ABST"', b'"ABSU"')).decode()  # one byte
    message = first(verified(tampered(frozen, edit_lines(fmt.BALLOTS, change)), frozen), "log")
    assert message.startswith("tree head of size 5: the root recomputed from the records differs from the sealed "
                              "root: leaf 4 is not what was logged (leaf 4 (ballot of holder H004 received")


def test_a_dropped_ballot_is_named(frozen: FrozenMeeting) -> None:
    report = verified(tampered(frozen, edit_lines(fmt.BALLOTS, lambda records: records.pop(3))), frozen)
    assert first(report, "log") == "leaf 3: missing or out of order: the next record is leaf 4"


def test_two_swapped_ballots_are_named(frozen: FrozenMeeting) -> None:
    def swap(records: list[dict]) -> None:
        records[2], records[3] = records[3], records[2]
    report = verified(tampered(frozen, edit_lines(fmt.BALLOTS, swap)), frozen)
    assert first(report, "log") == "leaf 2: missing or out of order: the next record is leaf 3"
    assert any("leaf 2 comes after leaf 3: the records are not in log order" in str(d)
               for d in report.more_disagreements)


def test_a_register_matching_a_holder_to_another_investor_is_named_at_their_first_ballot(
        frozen: FrozenMeeting) -> None:
    def swap(records: list[dict]) -> None:  # H001 and H002 matched to each other's investor
        records[0]["investor"], records[1]["investor"] = records[1]["investor"], records[0]["investor"]
    register = {r["holder"]: r["investor"] for r in lines(members(frozen.bundle)[fmt.REGISTER])}
    message = first(verified(tampered(frozen, edit_lines(fmt.REGISTER, swap)), frozen), "signatures")
    assert message.startswith("leaf 0 (ballot of holder H001 received ")
    assert message.endswith(": the signer's certificate is not the one of the investor the register matches to "
                            f"the holder (expected {register['H002']}, found {register['H001']})")


def test_a_ballot_of_a_holder_no_investor_was_matched_to_is_caught(frozen: FrozenMeeting) -> None:
    report = verified(tampered(frozen, edit_lines(fmt.REGISTER, lambda records: records[3].update(investor=None))),
                      frozen)
    assert "(expected no enrolled investor, found INV-" in first(report, "signatures")
    assert "holder H004" in first(report, "signatures")


def test_a_changed_share_count_in_the_register_changes_the_recount(frozen: FrozenMeeting) -> None:
    report = verified(tampered(frozen, edit_lines(fmt.REGISTER, lambda records: records[4].update(shares="2500"))),
                      frozen)
    message = first(report, "tally")
    assert message.startswith("meeting: outstanding_shares: the frozen tally differs from the recount (expected "
                              "1,152,921,504,606,851,023, found 1,152,921,504,606,848,773)")


def test_a_changed_figure_in_the_frozen_tally_is_named_by_item_and_field(frozen: FrozenMeeting) -> None:
    def change(files: Files) -> None:
        tally = json.loads(files[fmt.TALLY])
        tally["items"][1]["against_votes"] = str(int(tally["items"][1]["against_votes"]) + 1)  # a string: as the API
        files[fmt.TALLY] = json.dumps(tally).encode()
    message = first(verified(tampered(frozen, change), frozen), "tally")
    assert message == ("item 2 (special): against_votes: the frozen tally differs from the recount "
                       "(expected 1,490, found 1,491)")


def test_share_figures_frozen_as_strings_still_agree(frozen: FrozenMeeting) -> None:
    def as_strings(files: Files) -> None:
        from voting.results import shares_as_strings
        files[fmt.TALLY] = json.dumps(shares_as_strings(json.loads(files[fmt.TALLY]))).encode()
    assert verified(tampered(frozen, as_strings), frozen).ok


def test_a_changed_tree_head_fails_its_seal(frozen: FrozenMeeting) -> None:
    def change(records: list[dict]) -> None:
        records[2]["root_hash"] = base64.b64encode(bytes(32)).decode()
    message = first(verified(tampered(frozen, edit_lines(fmt.TREE_HEADS, change)), frozen), "tree_heads")
    assert message.startswith("tree head of size 3 (issued ") and message.endswith(
        "its seal signature does not verify over its statement")


def test_a_status_the_rules_do_not_give_is_named(frozen: FrozenMeeting) -> None:
    report = verified(tampered(frozen, edit_lines(fmt.BALLOTS, lambda r: r[6].update(status="superseded"))), frozen)
    message = first(report, "rules")
    assert message.startswith("leaf 7 (ballot of holder H002 received ") and message.endswith(
        "the rules give another status (expected counted, found superseded)")


def signed_response(frozen: FrozenMeeting, serial: int, *, revoked_at: dt.datetime | None,
                    this_update: dt.datetime, next_update: dt.datetime) -> bytes:
    """An OCSP response about ``serial`` signed by the platform's own OCSP signer."""
    pki = frozen.platform.pki
    with session_scope(frozen.platform.engine) as session:
        signer = ca_ocsp.current_ocsp_signer(session, pki)
        issuing = pki.ca_certificate(pki.load_ca(session, "issuing"))
        assert signer is not None and signer.key_label
        key, responder = pki.signing_key(signer.key_label, "ocsp:issuing"), x509.load_der_x509_certificate(signer.der)
    name_hash, key_hash = ca_ocsp.issuer_hashes(issuing, hashes.SHA256())
    status = ocsp.OCSPCertStatus.REVOKED if revoked_at else ocsp.OCSPCertStatus.GOOD
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial, algorithm=hashes.SHA256(),
        cert_status=status, this_update=this_update, next_update=next_update, revocation_time=revoked_at,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def with_evidence(frozen: FrozenMeeting, leaf: int, make: Callable[[int, dt.datetime], bytes | None]) -> bytes:
    """The bundle with the OCSP evidence of the ballot at ``leaf`` replaced by ``make(serial, received_at)``."""
    def edit(files: Files) -> None:
        ballots = lines(files[fmt.BALLOTS])
        ballot = next(b for b in ballots if b["leaf_index"] == leaf)
        serial = parse_detached_cms(base64.b64decode(ballot["cms"])).signer_certificate.serial_number
        der = make(serial, parse_log_time(ballot["received_at"]))
        ballot["ocsp_sha256"] = None if der is None else fmt.sha256_hex(der)
        files[fmt.BALLOTS] = jsonl(ballots)
        if der is not None:
            files[fmt.OCSP_RESPONSES] += jsonl([{"sha256": fmt.sha256_hex(der), "der": fmt.b64(der)}])
    return tampered(frozen, edit)


def test_evidence_saying_revoked_at_receipt_is_caught(frozen: FrozenMeeting) -> None:
    bundle = with_evidence(frozen, 5, lambda serial, at: signed_response(
        frozen, serial, revoked_at=at.replace(microsecond=0) - dt.timedelta(seconds=1),
        this_update=at.replace(microsecond=0), next_update=at + dt.timedelta(hours=24)))
    message = first(verified(bundle, frozen, workers=2), "signatures")
    assert message.startswith("leaf 5 (ballot of holder H005 received ")
    assert "the OCSP response kept at receipt says revoked (since " in message and "keyCompromise" in message


def test_evidence_from_before_the_receipt_is_caught(frozen: FrozenMeeting) -> None:
    bundle = with_evidence(frozen, 0, lambda serial, at: signed_response(
        frozen, serial, revoked_at=None, this_update=at - dt.timedelta(days=2), next_update=at - dt.timedelta(days=1)))
    message = first(verified(bundle, frozen), "signatures")
    assert message.startswith("leaf 0 (ballot of holder H001 received ")
    assert "the OCSP response kept at receipt does not cover the receipt" in message


def test_a_ballot_without_evidence_must_not_count(frozen: FrozenMeeting) -> None:
    message = first(verified(with_evidence(frozen, 7, lambda serial, at: None), frozen), "signatures")
    assert message.startswith("leaf 7 (ballot of holder H002 received ")
    assert message.endswith("the OCSP response kept at receipt is missing: the platform kept none")


def test_another_root_is_refused_and_the_bundle_root_is_named(frozen: FrozenMeeting) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some Other Root CA")])
    now = dt.datetime.now(dt.timezone.utc)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA384()))
    message = first(verified(frozen.bundle, frozen, root=other), "certificates")
    assert "cloudseal Issuing CA" in message and "does not chain to the given root CN=Some Other Root CA" in message
    assert "the bundle was made under the root CN=cloudseal Root CA" in message


def test_an_investor_certificate_offered_as_a_platform_seal_is_refused(frozen: FrozenMeeting) -> None:
    """The issuing CA certifies investors too, and an investor's HSM key signs any hash its
    holder asks for: a certificate that may sign is not yet a seal."""
    def offer(files: Files) -> None:
        investor = files[fmt.INVESTORS_PEM].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
        files[fmt.SEALS_PEM] += investor
    message = first(verified(tampered(frozen, offer), frozen), "certificates")
    assert "may not act as a platform seal" in message and "INV-" in message


def test_the_policy_suffixes_are_the_cas() -> None:
    from ca import profiles
    from voting import audit_trust
    assert (audit_trust.INVESTOR_POLICY_SUFFIX, audit_trust.PLATFORM_POLICY_SUFFIX) == (
        profiles.INVESTOR_SIGNING_POLICY, profiles.PLATFORM_POLICY)


def test_not_a_zip_is_a_disagreement_not_a_crash(frozen: FrozenMeeting) -> None:
    message = first(verified(b"PK\x03\x04 definitely not a zip", frozen), "manifest")
    assert message.startswith("bundle: not a readable ZIP archive")


_PURE_RUN = """
import sys
from pathlib import Path
from voting.audit_verify import load_root, verify_bundle
report = verify_bundle(Path("bundle.zip"), load_root(Path("root.crt").read_bytes()), workers=2)
layers = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "httpx", "pkcs11", "core.db", "core.settings",
          "core.auth", "hsm_sim", "ca", "ra", "signing.revocation", "voting.models", "voting.service")
loaded = sorted(m for m in sys.modules if any(m == layer or m.startswith(layer + ".") for layer in layers))
print("ok" if report.ok else report.disagreement, loaded)
"""


def test_the_verifier_runs_with_nothing_but_the_bundle_and_the_root(frozen: FrozenMeeting, tmp_path: Path) -> None:
    on_disk(frozen, tmp_path)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "COLUMNS": "200"}  # no CLOUDSEAL_* at all
    run = subprocess.run([sys.executable, "-c", _PURE_RUN], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok []"
    script = Path(sys.executable).parent / "cloudseal"
    run = subprocess.run([str(script), "audit", "verify", "bundle.zip", "--root", "root.crt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip", "root.crt"]  # no database, no HSM files
