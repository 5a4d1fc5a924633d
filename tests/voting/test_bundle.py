"""The auditor bundle of a frozen meeting: its files, who may download it, the CLI that writes it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gc
import hashlib
import json
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from cloudseal.app import create_app
from cloudseal.cli import app as cli
from core.auth import Role
from core.db import session_scope
from core.settings import get_settings
from signing.cms_parse import parse_detached_cms
from tests.conftest import bearer
from tests.ra.factories import NATIONAL_IDS
from tests.voting.audit_meeting import BIG, FrozenMeeting, frozen_meeting, lines, members, published_meeting
from voting import bundle as auditor_bundle
from voting import bundle_format as fmt
from voting import exports, merkle
from voting.audit_verify import verify_bundle
from voting.log_records import log_entry, parse_log_time, revocation_log_entry
from voting.models import BallotRow, RunningTally, TreeHead


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> FrozenMeeting:
    return frozen_meeting(tmp_path_factory.mktemp)


@pytest.fixture(scope="module")
def files(frozen: FrozenMeeting) -> dict[str, bytes]:
    return members(frozen.bundle)


@pytest.fixture(scope="module")
def http(frozen: FrozenMeeting) -> Iterator[TestClient]:
    with TestClient(create_app(platform=frozen.platform, background_refresh=False)) as client:
        yield client


def test_the_manifest_lists_every_file_with_its_sha256_and_the_platform_seals_it(files: dict[str, bytes]) -> None:
    manifest = json.loads(files[fmt.MANIFEST])
    assert manifest["format"] == fmt.FORMAT
    assert set(manifest["files"]) == set(files) - {fmt.MANIFEST, fmt.MANIFEST_SEAL}
    for name, spec in manifest["files"].items():
        assert spec == {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}, name
    seal = json.loads(files[fmt.MANIFEST_SEAL])
    seals = {format(c.serial_number, "x"): c for c in x509.load_pem_x509_certificates(files[fmt.SEALS_PEM])}
    seals[seal["seal_serial"]].public_key().verify(base64.b64decode(seal["signature"]), files[fmt.MANIFEST],
                                                   ec.ECDSA(hashes.SHA256()))


def test_the_manifest_describes_the_meeting_its_rules_and_agenda(frozen: FrozenMeeting, files: dict[str, bytes]) -> None:
    manifest = json.loads(files[fmt.MANIFEST])
    meeting = manifest["meeting"]
    assert meeting["public_id"] == frozen.public_id and meeting["issuer"] == {"code": "2330", "name": "台灣積體電路製造"}
    assert parse_log_time(meeting["opens_at"]) < parse_log_time(meeting["closes_at"]) <= parse_log_time(
        meeting["frozen_at"])
    assert meeting["register_sha256"] == "ab" * 32 and meeting["register_holders"] == 7
    assert manifest["rules"] == {"public_company": True, "thresholds": {"special_majority": "2/3"}}
    assert [(i["key"], i["kind"], i["seats"]) for i in manifest["agenda"]] == [
        ("1", "ordinary", 0), ("2", "special", 0), ("3", "election", 2), ("X1", "extempore", 0)]
    assert [c["key"] for c in manifest["agenda"][2]["candidates"]] == ["C1", "C2", "C3"]
    assert {k: manifest["counts"][k] for k in ("holders", "ballots", "revocations", "log_size", "tree_heads")} == {
        "holders": 7, "ballots": 7, "revocations": 1, "log_size": 8, "tree_heads": 8}


def test_the_register_carries_shares_and_never_names_or_identity_numbers(files: dict[str, bytes]) -> None:
    register = lines(files[fmt.REGISTER])
    assert register[0] == {"holder": "H001", "shares": str(BIG), "non_voting_shares": "0", "nominee": False,
                           "investor": register[0]["investor"]}
    assert (register[4]["nominee"], register[6]["non_voting_shares"]) == (True, "10")


def test_the_register_names_the_investor_matched_to_each_holder_and_their_certificates_carry_it(
        files: dict[str, bytes]) -> None:
    register = {record["holder"]: record["investor"] for record in lines(files[fmt.REGISTER])}
    enrolled = {holder: reference for holder, reference in register.items() if reference is not None}
    assert sorted(enrolled) == ["H001", "H002", "H003", "H004", "H005"]  # H006 and H007 never enrolled
    assert len(set(enrolled.values())) == 5 and all(r.startswith("INV-") for r in enrolled.values())
    signers = {}
    for record in lines(files[fmt.BALLOTS]):
        certificate = parse_detached_cms(base64.b64decode(record["cms"])).signer_certificate
        signers[record["holder"]] = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
    assert signers == {holder: enrolled[holder] for holder in signers}
    everything = b"".join(files.values())
    for secret in [*NATIONAL_IDS[:7], "Name of", "Proxy Person", "interested"]:
        assert secret.encode() not in everything


def test_ballots_and_revocations_are_in_log_order_with_status_and_evidence(frozen: FrozenMeeting,
                                                                           files: dict[str, bytes]) -> None:
    ballots, revocations = lines(files[fmt.BALLOTS]), lines(files[fmt.REVOCATIONS])
    assert [(b["leaf_index"], b["holder"], b["status"]) for b in ballots] == [
        (0, "H001", "counted"), (1, "H002", "revoked"), (2, "H001", "superseded"), (3, "H003", "overridden_by_proxy"),
        (4, "H004", "counted"), (5, "H005", "counted"), (7, "H002", "counted")]
    assert ballots[4]["voided_items"] == {"3": "void_over_allocation"}
    (revocation,) = revocations
    assert (revocation["leaf_index"], revocation["holder"]) == (6, "H002")
    assert revocation["revoked"] == [hashlib.sha256(base64.b64decode(ballots[1]["payload"])).hexdigest()]
    evidence = {r["sha256"]: base64.b64decode(r["der"]) for r in lines(files[fmt.OCSP_RESPONSES])}
    assert all(hashlib.sha256(der).hexdigest() == digest for digest, der in evidence.items())
    assert {b["ocsp_sha256"] for b in ballots} | {revocation["ocsp_sha256"]} == set(evidence)  # one per signer
    with session_scope(frozen.platform.engine) as session:
        stored = session.execute(select(BallotRow).order_by(BallotRow.leaf_index)).scalars().all()
        assert [(row.payload, row.cms, row.revocation_evidence) for row in stored] == [
            (base64.b64decode(b["payload"]), base64.b64decode(b["cms"]), evidence[b["ocsp_sha256"]]) for b in ballots]


def test_the_tree_heads_are_the_sealed_ones_and_the_records_rebuild_the_log(frozen: FrozenMeeting,
                                                                            files: dict[str, bytes]) -> None:
    heads = lines(files[fmt.TREE_HEADS])
    with session_scope(frozen.platform.engine) as session:
        stored = session.execute(select(TreeHead).where(TreeHead.meeting_id == frozen.meeting_id)
                                 .order_by(TreeHead.tree_size)).scalars().all()
        assert [(h["tree_size"], base64.b64decode(h["root_hash"]), base64.b64decode(h["signature"]))
                for h in heads] == [(t.tree_size, t.root_hash, t.signature) for t in stored]
    entries = {}
    for b in lines(files[fmt.BALLOTS]):
        payload, cms = base64.b64decode(b["payload"]), base64.b64decode(b["cms"])
        entries[b["leaf_index"]] = log_entry(frozen.public_id, b["holder"], hashlib.sha256(payload).hexdigest(),
                                             hashlib.sha256(cms).hexdigest(), parse_log_time(b["received_at"]))
    for r in lines(files[fmt.REVOCATIONS]):
        payload, cms = base64.b64decode(r["payload"]), base64.b64decode(r["cms"])
        entries[r["leaf_index"]] = revocation_log_entry(frozen.public_id, r["holder"], hashlib.sha256(payload).hexdigest(),
                                                        hashlib.sha256(cms).hexdigest(), r["revoked"],
                                                        parse_log_time(r["received_at"]))
    leaves = [merkle.leaf_hash(entries[n]) for n in range(len(entries))]
    assert [merkle.root_hash(leaves[:h["tree_size"]]) for h in heads] == [base64.b64decode(h["root_hash"]) for h in heads]


def test_the_room_and_the_frozen_tally_are_as_the_host_entered_and_froze_them(frozen: FrozenMeeting,
                                                                              files: dict[str, bytes]) -> None:
    room = json.loads(files[fmt.ROOM])
    assert [(a["holder"], a["mode"], a["choices"]) for a in room["attendance"]] == [
        ("H003", "proxy", {"1": "CAGS", "2": "CAGS", "X1": "CAGS"}), ("H004", "in_person", {}),
        ("H006", "in_person", {"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C1": 180}}, "X1": "CFOR"})]
    assert room["recusals"] == [{"item": "2", "holder": "H001"}] and room["items_added_at_meeting"] == ["X1"]
    with session_scope(frozen.platform.engine) as session:
        assert files[fmt.TALLY] == (session.get(RunningTally, frozen.meeting_id).frozen_tally or "").encode()
    crls = sorted(n for n in files if n.startswith(fmt.CRL_DIRECTORY))
    assert crls == ["crls/issuing-1.crl", "crls/root-1.crl"]
    assert len(x509.load_pem_x509_certificates(files[fmt.INVESTORS_PEM])) == 5


def test_hosts_operators_and_auditors_download_the_bundle(frozen: FrozenMeeting, http: TestClient) -> None:
    url = f"/voting/meetings/{frozen.meeting_id}/bundle.zip"
    for role, tenant in ((Role.ISSUER_HOST, "2330"), (Role.OPERATOR, None), (Role.AUDITOR, None)):
        answer = http.get(url, headers=bearer(frozen.platform, role, tenant=tenant))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        assert answer.headers["content-disposition"] == f'attachment; filename="2330-{frozen.public_id}-bundle.zip"'
        assert verify_bundle(answer.content, frozen.root, workers=0).ok


def test_a_host_of_another_issuer_gets_404_and_an_anonymous_caller_401(frozen: FrozenMeeting, http: TestClient) -> None:
    url = f"/voting/meetings/{frozen.meeting_id}/bundle.zip"
    answer = http.get(url, headers=bearer(frozen.platform, Role.ISSUER_HOST, tenant="2454"))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_meeting"
    assert http.get(url).status_code == 401
    answer = http.get(f"/voting/meetings/{frozen.meeting_id}/bundle.zip",
                      headers=bearer(frozen.platform, Role.RA_OFFICER, tenant="B001"))
    assert answer.status_code == 403
    answer = http.get("/voting/meetings/0/bundle.zip", headers=bearer(frozen.platform))
    assert 400 <= answer.status_code < 500 and "error" in answer.json()


def test_there_is_no_bundle_before_the_tally_is_frozen(frozen: FrozenMeeting, http: TestClient) -> None:
    running = published_meeting(frozen.platform, title="Not frozen yet")
    url = f"/voting/meetings/{running.id}/bundle.zip"
    answer = http.get(url, headers=bearer(frozen.platform, Role.ISSUER_HOST, tenant="2330"))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "meeting_not_frozen"
    assert http.get(url, headers=bearer(frozen.platform, Role.AUDITOR)).status_code == 404  # auditors see frozen ones


@pytest.fixture
def configured(frozen: FrozenMeeting, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = frozen.platform.settings
    monkeypatch.setenv("CLOUDSEAL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CLOUDSEAL_HSM", settings.hsm)
    monkeypatch.setenv("CLOUDSEAL_PUBLIC_URL", settings.public_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_cli_writes_the_bundle_of_a_frozen_meeting(frozen: FrozenMeeting, configured: None, tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    result = CliRunner().invoke(cli, ["audit", "bundle", "--meeting", frozen.public_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "7 ballots, 1 revocations, 8 tree heads" in result.output
    assert verify_bundle(out, frozen.root, workers=0).ok
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.zip"]  # no partial file left beside it


def test_the_cli_refuses_an_unknown_or_unfrozen_meeting(frozen: FrozenMeeting, configured: None,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    result = CliRunner().invoke(cli, ["audit", "bundle", "--meeting", "0" * 32, "--out", str(out)])
    assert result.exit_code == 1 and "unknown_meeting" in result.output
    running = published_meeting(frozen.platform, title="Still running")
    result = CliRunner().invoke(cli, ["audit", "bundle", "--meeting", running.public_id, "--out", str(out)])
    assert result.exit_code == 1 and "meeting_not_frozen" in result.output
    assert list(tmp_path.iterdir()) == []


def get_and_leave(app: Any, path: str, headers: dict[str, str], released: Callable[[], bool]) -> list[dict[str, Any]]:
    """GET ``path`` over raw ASGI (spec 2.4) and hang up as the first body chunk is sent, as
    a client closing its connection mid-download does; the messages the app sent. Asserts
    ``released()`` as soon as the app is done, while its event loop still runs (a server's
    loop does not end with the request)."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    async def request() -> None:
        with contextlib.suppress(Exception):
            await app(scope, receive, send)
        assert released()

    asyncio.run(request())
    return sent


def test_a_client_that_leaves_mid_download_releases_the_temporary_file_at_once(
        frozen: FrozenMeeting, http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[IO[bytes]] = []
    temporary_file = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> IO[bytes]:
        opened.append(temporary_file(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(auditor_bundle.tempfile, "TemporaryFile", spy)
    gc.disable()  # released by the response itself, not whenever the garbage collector runs
    try:
        sent = get_and_leave(http.app, f"/voting/meetings/{frozen.meeting_id}/bundle.zip",
                             bearer(frozen.platform, Role.OPERATOR), lambda: all(f.closed for f in opened))
        assert sent[0]["status"] == 200 and opened  # the bundle (and the spool of OCSP responses)
    finally:
        gc.enable()


def test_a_client_that_leaves_mid_ballot_list_releases_its_database_session_at_once(
        frozen: FrozenMeeting, http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    generators: list[Iterator[str]] = []
    ballots_csv = exports.ballots_csv

    def spy(*args: Any, **kwargs: Any) -> Iterator[str]:
        generators.append(ballots_csv(*args, **kwargs))
        return generators[-1]

    monkeypatch.setattr(exports, "ballots_csv", spy)
    gc.disable()
    try:
        # Closed, and its database session with it.
        sent = get_and_leave(http.app, f"/voting/meetings/{frozen.meeting_id}/exports/ballots.csv",
                             bearer(frozen.platform, Role.OPERATOR),
                             lambda: all(g.gi_frame is None for g in generators))  # type: ignore[attr-defined]
        assert sent[0]["status"] == 200 and len(generators) == 1
    finally:
        gc.enable()


def test_the_writer_keeps_ocsp_responses_on_disk_not_in_memory(tmp_path: Path) -> None:
    """One OCSP response per signer: a million voters' would be gigabytes held while the
    bundle is written. They wait in a temporary file; the bundle lists each once, sorted."""
    def response(n: int) -> bytes:  # 4 KiB, made afresh at each call
        return hashlib.sha512(n.to_bytes(4, "big")).digest() * 64

    writer = fmt.BundleWriter(tmp_path / "bundle.zip")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        digests = [writer.add_ocsp(response(n % 2000)) for n in range(2010)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2_000_000, held  # the responses themselves are 8 MB
    writer.finish({}, lambda data: (b"signature", "1"), dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    written = lines(members((tmp_path / "bundle.zip").read_bytes())[fmt.OCSP_RESPONSES])
    assert [r["sha256"] for r in written] == sorted(set(digests)) and len(written) == 2000
    assert {r["sha256"]: base64.b64decode(r["der"]) for r in written} == {
        hashlib.sha256(response(n)).hexdigest(): response(n) for n in range(2000)}
