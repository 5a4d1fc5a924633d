"""The sealed PDF report of a frozen meeting: content, PAdES seal (pdfsig and pyHanko), LTV
material in the DSS, timestamps from a real RFC 3161 TSA over HTTP, and its endpoint."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import io
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from sqlalchemy import select

from ca.bootstrap import current_seal
from ca.context import signature_hash
from cloudseal.platform import Platform
from core.auth import Actor, Role
from core.db import session_scope
from core.errors import AppError
from tests.conftest import bearer
from tests.ra.factories import NATIONAL_IDS
from tests.voting.test_attendance import meeting_row
from tests.voting.test_ballots import HOST, make_meeting, signed, submit, voter
from voting import attendance, report_pdf, results
from voting import service as voting_service
from voting.models import Meeting, MeetingReport
from voting.service import AgendaItemIn, CandidateIn

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "report"
ISSUER_NAME = "台灣積體電路製造股份有限公司"
REPORT_ITEMS = [
    AgendaItemIn("1", "ordinary", "承認2025年度營業報告書及財務報表案"),
    AgendaItemIn("2", "special", "修訂公司章程案", article="277"),
    AgendaItemIn("3", "election", "補選董事二席", seats=2,
                 candidates=(CandidateIn("C1", "林志明"), CandidateIn("C2", "陳美玲"), CandidateIn("C3", "Wang Da-wei"))),
]
SHARES = {"H001": 1_234_567, "H002": 500_000, "H003": 300_000, "H004": 65_433}


@dataclass(frozen=True)
class FrozenMeeting:
    meeting_id: int
    public_id: str


def voted_meeting(platform: Platform) -> FrozenMeeting:
    """The report's meeting, voted but not frozen: two e-voters (one changes their mind too
    late: superseded), one holder in the room, one recusal, a tie for the last board seat."""
    holders = [(no, NATIONAL_IDS[n], shares) for n, (no, shares) in enumerate(SHARES.items())]
    public_id = make_meeting(platform, holders, held_yesterday=True, items=REPORT_ITEMS, title="2026 年股東常會",
                             issuer_name=ISSUER_NAME)
    row = meeting_row(platform, public_id)
    during = row.closes_at - dt.timedelta(hours=1)
    alice, bob = voter(platform, "H001", NATIONAL_IDS[0]), voter(platform, "H002", NATIONAL_IDS[1])
    submit(platform, *signed(platform, alice, public_id, {"1": "CFOR", "2": "CFOR", "3": {"allocations": {
        "C1": 2 * SHARES["H001"]}}}), received_at=during)
    submit(platform, *signed(platform, bob, public_id, {"1": "CAGS", "2": "CFOR", "3": {"allocations": {
        "C2": 500_000, "C3": 500_000}}}), received_at=during + dt.timedelta(minutes=1))
    submit(platform, *signed(platform, bob, public_id, {"1": "ABST"}), received_at=during + dt.timedelta(minutes=2))
    with session_scope(platform.engine) as session:
        attendance.record_attendance(session, actor=HOST, meeting_id=row.id or 0, holder_no="H003", mode="in_person",
                                     choices={"1": "CFOR", "2": "CAGS", "3": {"allocations": {"C2": 300_000,
                                                                                          "C3": 300_000}}})
        attendance.record_recusal(session, actor=HOST, meeting_id=row.id or 0, item_key="2", holder_no="H002",
                                  reason="party to the amendment")
    return FrozenMeeting(row.id or 0, public_id)


def freeze(platform: Platform, meeting: FrozenMeeting) -> bytes:
    with session_scope(platform.engine) as session:
        voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting.meeting_id)
    with session_scope(platform.engine) as session:
        report = session.get(MeetingReport, meeting.meeting_id)
        assert report is not None and report.pdf_sha256 == hashlib.sha256(report.pdf).hexdigest()
        return report.pdf


@pytest.fixture
def sealed(platform: Platform) -> tuple[FrozenMeeting, bytes]:
    meeting = voted_meeting(platform)
    return meeting, freeze(platform, meeting)


def root_certificate(platform: Platform) -> asn1_x509.Certificate:
    with session_scope(platform.engine) as session:
        root = platform.pki.ca_certificate(platform.pki.load_ca(session, "root"))
    return asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))


def pyhanko_status(platform: Platform, pdf: bytes):
    """pyHanko's verdict on the seal, trusting only the platform root, with nothing but the
    revocation data embedded in the document (fetching off, every status required)."""
    reader = PdfFileReader(io.BytesIO(pdf))
    context = DocumentSecurityStore.read_dss(reader).as_validation_context(
        {"trust_roots": [root_certificate(platform)], "allow_fetching": False, "revocation_mode": "require"})
    return reader, validate_pdf_signature(reader.embedded_regular_signatures[0], context)


def run_tool(*args: str) -> str:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} not installed (apt-get install poppler-utils)")
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60).stdout


def test_pdfsig_finds_the_seal_valid_and_the_document_unmodified(sealed, tmp_path: Path) -> None:
    _, pdf = sealed
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    output = run_tool("pdfsig", str(path))
    assert "Signature #1:" in output and "Signature #2:" not in output
    assert "Signature Validation: Signature is Valid." in output
    assert "Platform Seal" in output and "Signature Type: ETSI.CAdES.detached" in output
    # The DSS (B-LT) is written in the signed revision, so the signature covers the whole file;
    # pyHanko's diff analysis agrees (next test).
    assert "Total document signed" in output and "Not total" not in output


def test_pyhanko_finds_the_seal_intact_valid_trusted_with_the_embedded_revocation_data(
        platform: Platform, sealed) -> None:
    _, pdf = sealed
    _, status = pyhanko_status(platform, pdf)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.bottom_line and status.docmdp_ok
    assert status.modification_level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES)
    assert "Platform Seal" in status.signing_cert.subject.human_friendly
    with session_scope(platform.engine) as session:
        seal = current_seal(session, platform.pki)
    assert seal is not None and format(status.signing_cert.serial_number, "x") == seal.serial_hex


def test_freezing_seals_the_report_on_every_database_and_hsm(any_platform: Platform) -> None:
    _, status = pyhanko_status(any_platform, freeze(any_platform, voted_meeting(any_platform)))
    assert status.bottom_line and status.trusted, status.pretty_print_details()


def test_the_dss_holds_the_seal_ocsp_response_and_the_issuing_ca_crl(platform: Platform, sealed) -> None:
    _, pdf = sealed
    dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(pdf)))
    responses = [asn1_ocsp.OCSPResponse.load(ref.get_object().data) for ref in dss.ocsps]
    crls = [x509.load_der_x509_crl(ref.get_object().data) for ref in dss.crls]
    with session_scope(platform.engine) as session:
        seal = current_seal(session, platform.pki)
        issuing = platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))
    assert seal is not None
    about = {format(single["cert_id"]["serial_number"].native, "x"): single["cert_status"].name
             for response in responses for single in response.basic_ocsp_response["tbs_response_data"]["responses"]}
    assert about[seal.serial_hex] == "good"
    assert any(c.issuer == issuing.subject for c in crls)
    assert {cert.subject.human_friendly for cert in dss.load_certs()} >= {
        asn1_x509.Certificate.load(seal.der).subject.human_friendly}


def test_pdftotext_shows_the_chinese_titles_names_and_figures(platform: Platform, sealed, tmp_path: Path) -> None:
    meeting, pdf = sealed
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = run_tool("pdftotext", "-layout", str(path), "-")
    with session_scope(platform.engine) as session:
        tally = results.tally_for(session, HOST, meeting.meeting_id)
    first, special, election = tally["items"]  # type: ignore[misc]
    for expected in ("出席 Attendance", ISSUER_NAME, "2026 年股東常會", "修訂公司章程案", "補選董事二席", "林志明",
                     "陳美玲", "Asia/Taipei", "1,534,567", "500,000", "2,034,567", "2,100,000", "75.42%",
                     "通過 ADOPTED", "Tie for the last seat", "Page 1 of"):
        assert expected in text, expected
    assert first["for_votes"] == "1534567" and special["denominator"] == "1534567"
    assert election["tie_for_last_seat"] == ["C2", "C3"] and election["elected"] == ["C1"]
    assert f"{int(special['for_votes']):,}" in text and f"{int(election['votes_cast']):,}" in text


def test_pdftoppm_renders_every_page(sealed, tmp_path: Path) -> None:
    _, pdf = sealed
    (tmp_path / "report.pdf").write_bytes(pdf)
    run_tool("pdftoppm", "-png", "-r", "60", str(tmp_path / "report.pdf"), str(tmp_path / "page"))
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages and all(p.stat().st_size > 5000 for p in pages)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copy(page, ARTIFACTS / page.name)
    shutil.copy(tmp_path / "report.pdf", ARTIFACTS / "report.pdf")


def test_a_missing_font_fails_loudly_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report_pdf._font_glyphs.cache_clear()
    monkeypatch.setattr(report_pdf, "FONT_PATH", tmp_path / "absent.ttc")
    try:
        with pytest.raises(report_pdf.ReportFontMissing, match="apt-get install fonts-wqy-microhei"):
            report_pdf.drawable("出席")
    finally:
        report_pdf._font_glyphs.cache_clear()


def test_without_the_font_nothing_is_frozen(platform: Platform, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    meeting = voted_meeting(platform)
    report_pdf._font_glyphs.cache_clear()
    monkeypatch.setattr(report_pdf, "FONT_PATH", tmp_path / "absent.ttc")
    try:
        with pytest.raises(report_pdf.ReportFontMissing), session_scope(platform.engine) as session:
            voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting.meeting_id)
    finally:
        report_pdf._font_glyphs.cache_clear()
    with session_scope(platform.engine) as session:
        assert session.get(Meeting, meeting.meeting_id).status == "published"  # type: ignore[union-attr]


def test_figures_are_exact_integers_and_unknown_glyphs_show_their_code_point() -> None:
    assert report_pdf.shares(2**80 + 1) == "1,208,925,819,614,629,174,706,177"
    assert report_pdf.percent(1, 3) == "33.33%" and report_pdf.percent(2, 3) == "66.67%"
    assert report_pdf.percent(2**80, 2**81) == "50.00%" and report_pdf.percent(5, 0) == "—"
    assert report_pdf.drawable("林\U0002a6d6") == "林[U+2A6D6]"


# --- timestamps from a real RFC 3161 TSA over HTTP ------------------------------------------


def issue_tsa_certificate(platform: Platform) -> tuple[asn1_x509.Certificate, asn1_keys.PrivateKeyInfo]:
    """An RSA time-stamping certificate from the platform's issuing CA (pyHanko's dummy TSA
    signs with RSA); the issuing CA's CRL vouches for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with session_scope(platform.engine) as session:
        ca = platform.pki.load_ca(session, "issuing")
    ca_cert = platform.pki.ca_certificate(ca)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudseal test TSA")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(platform.pki.crl_url("issuing"))], None, None, None)]), critical=False)
            .sign(platform.pki.signing_key(ca.key_label, ca.key_owner), signature_hash(ca_cert.public_key())))
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)), \
        asn1_keys.PrivateKeyInfo.load(key_der)


@pytest.fixture
def tsa_url(platform: Platform) -> Iterator[str]:
    """An RFC 3161 TSA on localhost: pyHanko's dummy timestamper behind http.server."""
    cert, key = issue_tsa_certificate(platform)
    stamper = DummyTimeStamper(tsa_cert=cert, tsa_key=key)
    requests: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415)
                return
            answer = stamper.request_tsa_response(asn1_tsp.TimeStampReq.load(body)).dump()
            requests.append(len(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
        assert len(requests) >= 2  # a signature timestamp and a document timestamp, over the wire
    finally:
        server.shutdown()
        server.server_close()


def test_with_a_tsa_the_report_gets_signature_and_document_timestamps(platform: Platform, tsa_url: str,
                                                                       tmp_path: Path) -> None:
    platform.pki.tsa_url = tsa_url
    pdf = freeze(platform, voted_meeting(platform))
    reader, status = pyhanko_status(platform, pdf)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None and status.timestamp_validity.valid \
        and status.timestamp_validity.trusted
    assert status.modification_level == ModificationLevel.LTA_UPDATES
    assert len(reader.embedded_signatures) == 2
    document_ts = reader.embedded_timestamp_signatures[0]
    ts_context = DocumentSecurityStore.read_dss(reader).as_validation_context(
        {"trust_roots": [root_certificate(platform)], "allow_fetching": False})
    ts_status = validate_pdf_timestamp(document_ts, validation_context=ts_context)
    assert ts_status.valid and ts_status.trusted and ts_status.intact
    (tmp_path / "lta.pdf").write_bytes(pdf)
    output = run_tool("pdfsig", str(tmp_path / "lta.pdf"))
    seal, document_timestamp = output.split("Signature #2:")
    assert "Signature Validation: Signature is Valid." in seal
    # poppler does not verify RFC 3161 document timestamps ("not yet been verified"); pyHanko did above.
    assert "Signer Certificate Common Name: cloudseal test TSA" in document_timestamp


def test_an_unreachable_tsa_refuses_the_freeze_and_leaves_the_meeting_open(platform: Platform) -> None:
    meeting = voted_meeting(platform)
    platform.pki.tsa_url = "http://127.0.0.1:9/tsa"  # the discard port: nothing listens
    with pytest.raises(AppError) as refused, session_scope(platform.engine) as session:  # rolled back
        voting_service.freeze_meeting(session, platform.pki, actor=HOST, meeting_id=meeting.meeting_id)
    assert refused.value.code == "report_not_sealed"
    with session_scope(platform.engine) as session:
        row = session.execute(select(Meeting).where(Meeting.id == meeting.meeting_id)).scalar_one()
        assert row.status == "published" and session.get(MeetingReport, meeting.meeting_id) is None


# --- the endpoint ---------------------------------------------------------------------------


def report_url(meeting: FrozenMeeting) -> str:
    return f"/voting/meetings/{meeting.meeting_id}/report.pdf"


def test_the_host_downloads_the_report_other_issuers_get_404_and_before_freezing_409(
        platform: Platform, client: TestClient) -> None:
    meeting = voted_meeting(platform)
    host = bearer(platform, Role.ISSUER_HOST, subject="hana", tenant="2330")
    early = client.get(report_url(meeting), headers=host)
    assert early.status_code == 409 and early.json()["error"]["code"] == "meeting_not_frozen"
    frozen = client.post(f"/voting/meetings/{meeting.meeting_id}/freeze", headers=host)
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    answer = client.get(report_url(meeting), headers=host)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
    assert answer.headers["etag"] == f'"{hashlib.sha256(answer.content).hexdigest()}"'
    assert meeting.public_id in answer.headers["content-disposition"]
    other_host = bearer(platform, Role.ISSUER_HOST, subject="eve", tenant="2317")
    assert client.get(report_url(meeting), headers=other_host).json()["error"]["code"] == "unknown_meeting"
    assert client.get(report_url(meeting), headers=other_host).status_code == 404
    assert client.get(report_url(meeting), headers=bearer(platform, Role.AUDITOR, subject="audrey")).status_code == 200
    assert client.get(report_url(meeting)).status_code == 401
    assert client.get(report_url(meeting), headers=bearer(platform, Role.RA_OFFICER, tenant="B001")).status_code == 403


def test_bad_report_requests_get_json_4xx(platform: Platform, client: TestClient) -> None:
    host = bearer(platform, Role.ISSUER_HOST, subject="hana", tenant="2330")
    for path, status in (("/voting/meetings/0/report.pdf", 422), ("/voting/meetings/abc/report.pdf", 422),
                         ("/voting/meetings/99999/report.pdf", 404),
                         ("/voting/meetings/1" + "0" * 30 + "/report.pdf", 422)):
        answer = client.get(path, headers=host)
        assert answer.status_code == status and "code" in answer.json()["error"], path
    assert client.get("/voting/meetings/1/report.pdf", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_a_freeze_that_cannot_be_sealed_answers_409_and_changes_nothing(platform: Platform,
                                                                         client: TestClient) -> None:
    meeting = voted_meeting(platform)
    platform.pki.tsa_url = "http://127.0.0.1:9/tsa"
    host = bearer(platform, Role.ISSUER_HOST, subject="hana", tenant="2330")
    answer = client.post(f"/voting/meetings/{meeting.meeting_id}/freeze", headers=host)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "report_not_sealed"
    assert client.get(f"/voting/meetings/{meeting.meeting_id}", headers=host).json()["status"] == "published"
    platform.pki.tsa_url = None
    assert client.post(f"/voting/meetings/{meeting.meeting_id}/freeze", headers=host).status_code == 200
    assert client.get(report_url(meeting), headers=host).status_code == 200


def test_a_frozen_meeting_without_a_stored_report_answers_409(platform: Platform, client: TestClient) -> None:
    meeting = voted_meeting(platform)
    freeze(platform, meeting)
    with session_scope(platform.engine) as session:
        session.delete(session.get(MeetingReport, meeting.meeting_id))
    answer = client.get(report_url(meeting), headers=bearer(platform, Role.OPERATOR))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "report_missing"


def test_an_operator_freezing_another_issuers_meeting_is_allowed_but_a_host_is_not(platform: Platform) -> None:
    meeting = voted_meeting(platform)
    with pytest.raises(AppError) as refused, session_scope(platform.engine) as session:
        voting_service.freeze_meeting(session, platform.pki, actor=Actor("eve", Role.ISSUER_HOST, "2317"),
                                      meeting_id=meeting.meeting_id)
    assert refused.value.code == "unknown_meeting"
    with session_scope(platform.engine) as session:
        voting_service.freeze_meeting(session, platform.pki, actor=Actor("ops", Role.OPERATOR),
                                      meeting_id=meeting.meeting_id)
        assert session.get(MeetingReport, meeting.meeting_id) is not None


def test_a_freeze_without_the_font_answers_409_naming_the_package_and_a_retry_works(
        platform: Platform, client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    meeting = voted_meeting(platform)
    host = bearer(platform, Role.ISSUER_HOST, subject="hana", tenant="2330")
    report_pdf._font_glyphs.cache_clear()
    monkeypatch.setattr(report_pdf, "FONT_PATH", tmp_path / "absent.ttc")
    try:
        answer = TestClient(client.app, raise_server_exceptions=False).post(
            f"/voting/meetings/{meeting.meeting_id}/freeze", headers=host)
    finally:
        monkeypatch.undo()
        report_pdf._font_glyphs.cache_clear()
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "report_not_sealed"
    assert "fonts-wqy-microhei" in answer.json()["error"]["message"]
    assert client.get(f"/voting/meetings/{meeting.meeting_id}", headers=host).json()["status"] == "published"
    assert client.post(f"/voting/meetings/{meeting.meeting_id}/freeze", headers=host).status_code == 200
    assert client.get(report_url(meeting), headers=host).status_code == 200
