"""Refusals and edge cases: managed certificates, signer rotation, hostile inputs, PostgreSQL HTTP."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca.bootstrap import rotate_ocsp_signer
from ca.models import IssuedCertificate
from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope, utcnow
from tests.conftest import bearer
from tests.factories import OPERATOR, issue_investor_certificate, load, revoke

DER = serialization.Encoding.DER


@pytest.fixture
def any_client(any_platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform=any_platform, background_refresh=False)) as test_client:
        yield test_client


def _issuer(platform: Platform) -> x509.Certificate:
    with session_scope(platform.engine) as session:
        return platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))


def _request(platform: Platform, cert: x509.Certificate, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, _issuer(platform), hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(DER)


def _status(der: bytes | object) -> str:
    answer = ocsp.load_der_ocsp_response(der if isinstance(der, bytes) else der.der)  # bytes or an OcspAnswer
    if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return answer.response_status.name
    return answer.certificate_status.name


def test_pki_over_http_on_every_backend(any_platform: Platform, any_client: TestClient) -> None:
    cert = load(issue_investor_certificate(any_platform))
    der = _request(any_platform, cert)
    assert _status(any_client.post("/pki/ocsp", content=der).content) == "GOOD"
    got = any_client.get("/pki/ocsp/" + base64.b64encode(der).decode())
    assert got.status_code == 200 and _status(got.content) == "GOOD"
    assert got.headers["last-modified"].endswith("GMT")
    revoke(any_platform, format(cert.serial_number, "x"))
    assert _status(any_client.get("/pki/ocsp/" + base64.urlsafe_b64encode(der).decode()).content) == "REVOKED"
    crl = any_client.get("/pki/crl/issuing.crl")
    assert crl.status_code == 200 and x509.load_der_x509_crl(crl.content).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert any_client.get("/pki/chain.pem").status_code == 200


@pytest.mark.parametrize("profile", ["root_ca", "issuing_ca", "ocsp_signer"])
def test_platform_managed_certificates_cannot_be_revoked_by_hand(client: TestClient, platform: Platform,
                                                                 operator_headers: dict, profile: str) -> None:
    with session_scope(platform.engine) as session:
        serial = session.execute(select(IssuedCertificate.serial_hex).where(IssuedCertificate.profile == profile)).scalars().first()
    response = client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "keyCompromise"}, headers=operator_headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_revocable"
    cert = load(issue_investor_certificate(platform))
    assert _status(platform.ocsp.respond(_request(platform, cert))) == "GOOD"


def test_ocsp_signer_rotation_revokes_the_old_one_and_re_signs(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    before = ocsp.load_der_ocsp_response(platform.ocsp.respond(_request(platform, cert)).der)
    with session_scope(platform.engine) as session:
        new_serial = rotate_ocsp_signer(session, platform.pki, actor=OPERATOR, reason="keyCompromise")
    after = ocsp.load_der_ocsp_response(platform.ocsp.respond(_request(platform, cert)).der)
    assert after.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert format(after.certificates[0].serial_number, "x") == new_serial
    assert after.certificates[0].serial_number != before.certificates[0].serial_number
    old_signer = before.certificates[0]
    assert _status(platform.ocsp.respond(ocsp.OCSPRequestBuilder().add_certificate(
        old_signer, _issuer(platform), hashes.SHA1()).build().public_bytes(DER))) == "REVOKED"


def test_without_a_valid_signer_a_revocation_never_leaves_good_behind(platform: Platform) -> None:
    row = issue_investor_certificate(platform)
    assert _status(platform.ocsp.respond(_request(platform, load(row)))) == "GOOD"
    later = utcnow() + dt.timedelta(days=40)  # the 30-day OCSP signer has expired, no refresh ran
    platform.pki.clock = lambda: later
    platform.pki.forget_responder()
    revoke(platform, row.serial_hex)
    assert _status(platform.ocsp.respond(_request(platform, load(row)))) == "TRY_LATER"


def test_seal_certificates_are_not_issued_through_the_api(client: TestClient, operator_headers: dict) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    response = client.post("/ca/issuing/certificates", headers=operator_headers, json={
        "profile": "platform_seal", "public_key_pem": key, "subject": {"common_name": "Fake Seal", "organization": "x"}})
    assert response.status_code == 400 and response.json()["error"]["code"] == "profile_not_allowed"


@pytest.mark.parametrize("subject", [
    {"common_name": "Lin", "serial_number": "INV_0001"},
    {"common_name": "Lin", "serial_number": "INV-1", "country": "T1"},
    {"common_name": "x\u0000y", "serial_number": "INV-1"},
    {"common_name": "y" * 65, "serial_number": "INV-1"},
])
def test_subject_name_rules_are_enforced(client: TestClient, operator_headers: dict, subject: dict) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    response = client.post("/ca/issuing/certificates", headers=operator_headers,
                           json={"public_key_pem": key, "subject": subject})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_csr_subject_outside_the_profile_is_refused(client: TestClient, operator_headers: dict) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lin"), x509.NameAttribute(NameOID.SERIAL_NUMBER, "INV-1"),
                      x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "evil")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    response = client.post("/ca/issuing/certificates", headers=operator_headers,
                           json={"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_subject"


def test_key_of_an_unknown_algorithm_is_400(client: TestClient, operator_headers: dict) -> None:
    # SubjectPublicKeyInfo with algorithm OID 1.2.3.4 and a 4-byte key.
    spki = bytes.fromhex("300f300506032a03040303000102")
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(spki).decode() + "\n-----END PUBLIC KEY-----\n"
    response = client.post("/ca/issuing/certificates", headers=operator_headers,
                           json={"public_key_pem": pem, "subject": {"common_name": "Lin", "serial_number": "INV-1"}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"unsupported_key", "malformed_pem"}


@pytest.mark.parametrize("when", ["2999-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                  "2026-01-01T00:00:00"])
def test_implausible_invalidity_dates_are_refused(client: TestClient, platform: Platform, operator_headers: dict,
                                                  when: str) -> None:
    serial = issue_investor_certificate(platform).serial_hex
    response = client.post(f"/ca/certificates/{serial}/revoke", headers=operator_headers,
                           json={"reason": "keyCompromise", "invalidity_date": when})
    assert response.status_code == 422


def test_malformed_ocsp_shapes_get_malformed_request(platform: Platform) -> None:
    cert = load(issue_investor_certificate(platform))
    assert _status(platform.ocsp.respond(_request(platform, cert, nonce=b"n" * 33))) == "MALFORMED_REQUEST"
    assert _status(platform.ocsp.respond(_request(platform, cert, nonce=b"n" * 32))) == "GOOD"
    # Two single requests in one OCSPRequest: splice a second Request into the list.
    one = _request(platform, cert)
    request = x509.ocsp.load_der_ocsp_request(one)
    assert request.serial_number == cert.serial_number
    from asn1crypto import ocsp as asn1_ocsp
    parsed = asn1_ocsp.OCSPRequest.load(one)
    parsed["tbs_request"]["request_list"].append(parsed["tbs_request"]["request_list"][0].copy())
    assert _status(platform.ocsp.respond(parsed.dump(force=True))) == "MALFORMED_REQUEST"
    del parsed["tbs_request"]["request_list"][0]
    del parsed["tbs_request"]["request_list"][0]
    assert _status(platform.ocsp.respond(parsed.dump(force=True))) == "MALFORMED_REQUEST"


def test_streamed_oversized_body_is_413(client: TestClient, operator_headers: dict) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"profile": "investor_signing", "public_key_pem": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    response = client.post("/ca/issuing/certificates", content=chunks(),
                           headers={**operator_headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_auditor_may_read_but_not_revoke(client: TestClient, platform: Platform) -> None:
    serial = issue_investor_certificate(platform).serial_hex
    headers = bearer(platform, Role.AUDITOR, subject="audrey")
    assert client.get(f"/ca/certificates/{serial}", headers=headers).status_code == 200
    assert client.post(f"/ca/certificates/{serial}/revoke", json={}, headers=headers).status_code == 403


@pytest.mark.parametrize("path", ["/ca/issuing/certificates", "/pki/ocsp"])
def test_a_content_length_of_thousands_of_digits_is_413_not_an_error(client: TestClient, operator_headers: dict,
                                                                     path: str) -> None:
    """Python refuses to turn more than 4,300 digits into an int: such a length is too large."""
    response = client.post(path, content=b"{}", headers=[*operator_headers.items(), ("content-length", "9" * 5000),
                                                          ("content-type", "application/json")])
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
