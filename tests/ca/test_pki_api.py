"""The PKI endpoints and the operator CA endpoints over HTTP, including every refusal."""

from __future__ import annotations

import base64
import datetime as dt

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from core.auth import Role
from tests.conftest import bearer

PEM = serialization.Encoding.PEM


def public_key_pem(key: object | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def issue_body(**overrides: object) -> dict:
    body = {"profile": "investor_signing", "public_key_pem": public_key_pem(),
            "subject": {"common_name": "Lin Wei", "serial_number": "INV-42", "country": "TW"}}
    body.update(overrides)
    return body


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# Public endpoints -------------------------------------------------------------------

def test_chain_pem_lists_issuing_then_root(client: TestClient) -> None:
    response = client.get("/pki/chain.pem")
    assert response.status_code == 200
    issuing, root = x509.load_pem_x509_certificates(response.content)
    issuing.verify_directly_issued_by(root)


@pytest.mark.parametrize("name", ["root", "issuing"])
def test_ca_certificates_and_crls_are_served_as_der(client: TestClient, name: str) -> None:
    cert = client.get(f"/pki/{name}.crt")
    assert cert.headers["content-type"] == "application/pkix-cert"
    ca_cert = x509.load_der_x509_certificate(cert.content)
    crl = client.get(f"/pki/crl/{name}.crl")
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert x509.load_der_x509_crl(crl.content).is_signature_valid(ca_cert.public_key())


def test_unknown_ca_name_is_404(client: TestClient, operator_headers: dict) -> None:
    assert_error(client.get("/pki/crl/nope.crl"), 404, "unknown_ca")
    assert_error(client.get("/pki/nope.crt"), 404, "unknown_ca")
    assert_error(client.post("/ca/nope/certificates", json=issue_body(), headers=operator_headers), 404, "unknown_ca")


def test_ocsp_post_and_get(client: TestClient, operator_headers: dict) -> None:
    issued = client.post("/ca/issuing/certificates", json=issue_body(), headers=operator_headers).json()
    cert = x509.load_pem_x509_certificate(issued["certificate_pem"].encode())
    issuer = x509.load_der_x509_certificate(client.get("/pki/issuing.crt").content)
    der = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
    posted = client.post("/pki/ocsp", content=der, headers={"Content-Type": "application/ocsp-request"})
    assert posted.headers["content-type"] == "application/ocsp-response"
    assert x509_ocsp.load_der_ocsp_response(posted.content).certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    got = client.get("/pki/ocsp/" + base64.b64encode(der).decode().replace("/", "%2F"))
    assert x509_ocsp.load_der_ocsp_response(got.content).certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    assert "max-age" in got.headers["cache-control"]


@pytest.mark.parametrize("path", ["/pki/ocsp/!!!notbase64", "/pki/ocsp/AAAA"])
def test_malformed_ocsp_get_is_an_ocsp_error_not_a_500(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert x509_ocsp.load_der_ocsp_response(response.content).response_status == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_body_is_413(client: TestClient, operator_headers: dict) -> None:
    assert_error(client.post("/pki/ocsp", content=b"\x30" * 2_000_000), 413, "body_too_large")
    big = issue_body(public_key_pem="A" * 2_000_000)
    assert_error(client.post("/ca/issuing/certificates", json=big, headers=operator_headers), 413, "body_too_large")


# Operator issuance and revocation ---------------------------------------------------

def test_operator_issues_from_a_public_key_and_from_a_csr(client: TestClient, operator_headers: dict) -> None:
    response = client.post("/ca/issuing/certificates", json=issue_body(), headers=operator_headers)
    assert response.status_code == 201
    assert response.json()["status"] == "good"
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CSR Holder"),
                                    x509.NameAttribute(NameOID.SERIAL_NUMBER, "INV-7")]))
           .sign(key, hashes.SHA384()))
    from_csr = client.post("/ca/issuing/certificates", headers=operator_headers,
                           json={"csr_pem": csr.public_bytes(PEM).decode()})
    assert from_csr.status_code == 201, from_csr.text
    assert "CN=CSR Holder" in from_csr.json()["subject"]


def test_revoke_hold_release_and_show(client: TestClient, operator_headers: dict) -> None:
    serial = client.post("/ca/issuing/certificates", json=issue_body(), headers=operator_headers).json()["serial"]
    held = client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "certificateHold"}, headers=operator_headers)
    assert held.json()["status"] == "on_hold"
    assert client.post(f"/ca/certificates/{serial}/release", headers=operator_headers).json()["status"] == "good"
    revoked = client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "keyCompromise"}, headers=operator_headers)
    assert revoked.json()["status"] == "revoked"
    shown = client.get(f"/ca/certificates/{serial.upper()}", headers=operator_headers).json()
    assert shown["revocation_reason"] == "keyCompromise"


def test_revoke_of_unknown_serial_is_404(client: TestClient, operator_headers: dict) -> None:
    assert_error(client.post("/ca/certificates/abcdef0123/revoke", json={"reason": "superseded"}, headers=operator_headers),
                 404, "unknown_certificate")


def test_double_revoke_is_409(client: TestClient, operator_headers: dict) -> None:
    serial = client.post("/ca/issuing/certificates", json=issue_body(), headers=operator_headers).json()["serial"]
    assert client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "superseded"}, headers=operator_headers).status_code == 200
    assert_error(client.post(f"/ca/certificates/{serial}/revoke", json={"reason": "superseded"}, headers=operator_headers),
                 409, "already_revoked")


def test_release_of_a_good_certificate_is_409(client: TestClient, operator_headers: dict) -> None:
    serial = client.post("/ca/issuing/certificates", json=issue_body(), headers=operator_headers).json()["serial"]
    assert_error(client.post(f"/ca/certificates/{serial}/release", headers=operator_headers), 409, "not_on_hold")


@pytest.mark.parametrize("serial", ["xyz", "0", "1" * 41])
def test_invalid_serial_is_400(client: TestClient, operator_headers: dict, serial: str) -> None:
    assert_error(client.get(f"/ca/certificates/{serial}", headers=operator_headers), 400, "invalid_serial")


@pytest.mark.parametrize("pem", ["not pem at all", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_malformed_public_key_pem_is_400(client: TestClient, operator_headers: dict, pem: str) -> None:
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(public_key_pem=pem), headers=operator_headers),
                 400, "malformed_pem")


def test_malformed_csr_and_bad_csr_signature_are_400(client: TestClient, operator_headers: dict) -> None:
    assert_error(client.post("/ca/issuing/certificates", json={"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"},
                             headers=operator_headers), 400, "malformed_pem")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tampered"),
                                    x509.NameAttribute(NameOID.SERIAL_NUMBER, "INV-9")]))
           .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(csr)
    tampered[-5] ^= 0x01  # flip a bit inside the signature
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(tampered)) + b"-----END CERTIFICATE REQUEST-----\n"
    response = client.post("/ca/issuing/certificates", json={"csr_pem": pem.decode()}, headers=operator_headers)
    assert_error(response, 400, "bad_csr_signature")


def test_weak_rsa_key_is_400(client: TestClient, operator_headers: dict) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(public_key_pem=public_key_pem(weak)),
                             headers=operator_headers), 400, "unsupported_key")


def test_malformed_json_and_schema_errors(client: TestClient, operator_headers: dict) -> None:
    headers = {**operator_headers, "Content-Type": "application/json"}
    assert_error(client.post("/ca/issuing/certificates", content=b"{not json", headers=headers), 400, "malformed_json")
    assert_error(client.post("/ca/issuing/certificates", json={"profile": 5, "extra": True}, headers=operator_headers),
                 422, "validation_error")
    assert_error(client.post("/ca/issuing/certificates", json={"profile": "investor_signing"}, headers=operator_headers),
                 400, "invalid_request")


def test_only_requestable_profiles_are_issued(client: TestClient, operator_headers: dict) -> None:
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(profile="ocsp_signer"), headers=operator_headers),
                 400, "profile_not_allowed")
    assert_error(client.post("/ca/root/certificates", json=issue_body(), headers=operator_headers),
                 400, "profile_not_allowed")


# Authentication and roles --------------------------------------------------------------

def test_missing_token_is_401(client: TestClient) -> None:
    assert_error(client.post("/ca/issuing/certificates", json=issue_body()), 401, "missing_token")


@pytest.mark.parametrize("role", [Role.RA_OFFICER, Role.BROKER_BACKOFFICE, Role.ISSUER_HOST, Role.AUDITOR])
def test_non_operators_cannot_issue_or_revoke(client: TestClient, platform: Platform, role: Role) -> None:
    headers = bearer(platform, role, tenant="B001")
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(), headers=headers), 403, "forbidden_role")
    assert_error(client.post("/ca/certificates/abcd/revoke", json={}, headers=headers), 403, "forbidden_role")


def test_expired_token_is_refused(client: TestClient, platform: Platform) -> None:
    headers = bearer(platform, ttl=dt.timedelta(seconds=-60))
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(), headers=headers), 401, "token_expired")


def _claims(platform: Platform, **overrides: object) -> dict:
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    claims = {"iss": platform.token_issuer, "aud": "cloudseal", "sub": "mallory", "role": "operator",
              "iat": now, "nbf": now, "exp": now + 600}
    claims.update(overrides)
    return claims


def test_alg_none_token_is_refused(client: TestClient, platform: Platform) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    import json
    payload = base64.urlsafe_b64encode(json.dumps(_claims(platform)).encode()).rstrip(b"=").decode()
    token = f"{header}.{payload}."
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(), headers={"Authorization": f"Bearer {token}"}),
                 401, "invalid_token")


def test_hs256_token_forged_with_the_public_key_is_refused(client: TestClient, platform: Platform) -> None:
    public_pem = platform.jwt_public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac  # noqa: E401
    import json
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(_claims(platform)).encode())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + b64(signature)
    assert_error(client.post("/ca/issuing/certificates", json=issue_body(), headers={"Authorization": f"Bearer {token}"}),
                 401, "invalid_token")


def test_token_for_another_audience_or_issuer_is_refused(client: TestClient, platform: Platform) -> None:
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    from cloudseal.platform import JWT_KEY
    from hsm_sim.facade import hsm_private_key
    platform_key = hsm_private_key(platform.keystore, *JWT_KEY)
    for key, claims in ((platform_key, _claims(platform, aud="another-service")),
                        (platform_key, _claims(platform, iss="https://elsewhere/auth")),
                        (foreign_key, _claims(platform))):
        token = jwt.encode(claims, key, algorithm="ES256")
        assert_error(client.post("/ca/issuing/certificates", json=issue_body(), headers={"Authorization": f"Bearer {token}"}),
                     401, "invalid_token")


def test_unknown_route_and_method_use_the_error_envelope(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")
    assert_error(client.delete("/pki/chain.pem"), 405, "method_not_allowed")


def test_openapi_documents_the_ca_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/ca/{ca_name}/certificates" in paths and "/pki/ocsp" in paths
    assert "409" in paths["/ca/certificates/{serial}/revoke"]["post"]["responses"]
