"""The CSC API v1 as an independent CSC client would use it, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import httpx

import pyotp
from asn1crypto import algos as asn1_algos
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from fastapi.testclient import TestClient
from sqlalchemy import text

from cloudseal.platform import Platform
from ra import devices
from signing import service
from tests.conftest import bearer
from tests.ra.factories import Phone, create_broker, enrol_and_activate, enrolment_body, officer

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
DOC = hashlib.sha256(b"order 42: buy 1000 2330").digest()


def _basic(reference: str, pin: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{reference}:{pin}".encode()).decode()}


def _login(client: TestClient, platform: Platform, pin: str = "482916",
           key_algorithm: str = "EC_P256") -> tuple[dict[str, str], Phone, str]:
    create_broker(client, platform, "B001")
    investor_id, phone = enrol_and_activate(client, platform, key_algorithm=key_algorithm)
    reference = client.get(f"/ra/investors/{investor_id}", headers=bearer(platform)).json()["reference"]
    response = client.post("/csc/v1/auth/login", json={}, headers=_basic(reference, pin))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}, phone, reference


def _client_data(client: TestClient, phone: Phone, digests: list[bytes]) -> str:
    challenge = client.post("/ra/app/challenges", json={"credential_id": phone.credential_id}).json()
    message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                        service.authorization_action("sha256", digests), phone.credential_id or "")
    return json.dumps({"challenge_id": challenge["challenge_id"], "device_signature": phone.sign(message)})


def test_a_csc_client_lists_authorizes_and_signs(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform)
    assert client.post("/csc/v1/info", json={}).json()["specs"] == "1.0.4.0"
    ids = client.post("/csc/v1/credentials/list", json={}, headers=headers).json()["credentialIDs"]
    assert ids == [phone.credential_id]
    info = client.post("/csc/v1/credentials/info", headers=headers,
                       json={"credentialID": ids[0], "certificates": "chain", "certInfo": True, "authInfo": True}).json()
    assert info["SCAL"] == "2" and info["authMode"] == "explicit" and info["key"]["status"] == "enabled"
    assert ECDSA_SHA256 in info["key"]["algo"] and info["cert"]["status"] == "valid"
    leaf, issuing, root = (x509.load_der_x509_certificate(base64.b64decode(c)) for c in info["cert"]["certificates"])
    leaf.verify_directly_issued_by(issuing)
    authorized = client.post("/csc/v1/credentials/authorize", headers=headers, json={
        "credentialID": ids[0], "numSignatures": 1, "hash": [base64.b64encode(DOC).decode()], "hashAlgo": SHA256,
        "PIN": "482916", "clientData": _client_data(client, phone, [DOC])})
    assert authorized.status_code == 200, authorized.text
    assert 0 < authorized.json()["expiresIn"] <= 300
    signed = client.post("/csc/v1/signatures/signHash", headers=headers, json={
        "credentialID": ids[0], "SAD": authorized.json()["SAD"], "hash": [base64.b64encode(DOC).decode()],
        "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256})
    assert signed.status_code == 200, signed.text
    signature = base64.b64decode(signed.json()["signatures"][0])
    leaf.public_key().verify(signature, DOC, ec.ECDSA(Prehashed(hashes.SHA256())))
    again = client.post("/csc/v1/signatures/signHash", headers=headers, json={
        "credentialID": ids[0], "SAD": authorized.json()["SAD"], "hash": [base64.b64encode(DOC).decode()],
        "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256})
    assert again.status_code == 400 and again.json()["error"] == "invalid_request"


def test_csc_errors_use_the_csc_format(client: TestClient, platform: Platform) -> None:
    headers, phone, reference = _login(client, platform)
    no_token = client.post("/csc/v1/credentials/list", json={})
    assert no_token.status_code == 401 and no_token.json()["error"] == "invalid_token"
    assert "error_description" in no_token.json()
    wrong_pin = client.post("/csc/v1/credentials/authorize", headers=headers, json={
        "credentialID": phone.credential_id, "numSignatures": 1, "hash": [base64.b64encode(DOC).decode()],
        "PIN": "000111", "clientData": _client_data(client, phone, [DOC])})
    assert wrong_pin.status_code == 400 and wrong_pin.json()["error"] == "invalid_pin"
    bad_login = client.post("/csc/v1/auth/login", json={}, headers=_basic(reference, "999999"))
    assert bad_login.status_code == 400 and bad_login.json()["error"] == "invalid_pin"
    malformed = client.post("/csc/v1/credentials/authorize", headers=headers, json={"credentialID": 5})
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request"


def test_another_investors_credential_is_not_reachable(client: TestClient, platform: Platform) -> None:
    headers, _, _ = _login(client, platform)
    _, other = enrol_and_activate(client, platform, id_number="F131104093", accounts=["2"])
    response = client.post("/csc/v1/credentials/info", headers=headers, json={"credentialID": other.credential_id})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def _enrol_totp(client: TestClient, phone: Phone) -> pyotp.TOTP:
    challenge = client.post("/ra/app/challenges", json={"credential_id": phone.credential_id}).json()
    message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                        "totp_enrol", phone.credential_id or "")
    response = client.post("/signing/totp", json={"credential_id": phone.credential_id, "pin": "482916",
                                                  "challenge_id": challenge["challenge_id"],
                                                  "device_signature": phone.sign(message)})
    assert response.status_code == 201, response.text
    return pyotp.parse_uri(response.json()["otpauth_uri"])


def _authorize_with_otp(client: TestClient, headers: dict[str, str], credential_id: str, otp: str, doc: bytes):
    return client.post("/csc/v1/credentials/authorize", headers=headers, json={
        "credentialID": credential_id, "numSignatures": 1, "hash": [base64.b64encode(doc).decode()],
        "PIN": "482916", "OTP": otp})


def test_a_generic_csc_client_uses_pin_and_totp(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform)
    authenticator = _enrol_totp(client, phone)
    first = _authorize_with_otp(client, headers, phone.credential_id or "", authenticator.now(), DOC)
    assert first.status_code == 200, first.text
    replay = _authorize_with_otp(client, headers, phone.credential_id or "", authenticator.now(),
                                 hashlib.sha256(b"other").digest())
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_otp"
    wrong = _authorize_with_otp(client, headers, phone.credential_id or "", "000000", DOC)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_otp"


def test_otp_without_an_enrolled_authenticator_is_refused(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform)
    response = _authorize_with_otp(client, headers, phone.credential_id or "", "123456", DOC)
    assert response.status_code == 400


def test_hostile_credential_ids_and_sads_get_csc_errors_on_every_backend(any_platform: Platform) -> None:
    from cloudseal.app import create_app
    from core.auth import Actor, Role

    headers = {"Authorization": f"Bearer {any_platform.mint_token(Actor('INV-X', Role.INVESTOR))}"}
    with TestClient(create_app(platform=any_platform, background_refresh=False)) as client:
        for path, body in (
            ("/csc/v1/credentials/info", {"credentialID": "a\u0000b"}),
            ("/csc/v1/credentials/authorize", {"credentialID": "ab\u0000", "numSignatures": 1, "hash": ["AAAA"],
                                               "PIN": "1"}),
            ("/csc/v1/signatures/signHash", {"credentialID": "ab", "SAD": "\u0000", "hash": ["AAAA"],
                                             "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256}),
        ):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 400 and response.json()["error"] == "invalid_request", path
        assert client.post("/signing/totp", json={"credential_id": "ab", "pin": "1", "challenge_id": "ab",
                                                  "device_signature": "x"}).status_code == 404


RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
SHA384_RSA = "1.2.840.113549.1.1.12"
RSASSA_PSS = "1.2.840.113549.1.1.10"


def _pss_params(hash_name: str, salt_length: int) -> str:
    params = asn1_algos.RSASSAPSSParams({
        "hash_algorithm": {"algorithm": hash_name},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": hash_name}},
        "salt_length": salt_length})
    return base64.b64encode(params.dump()).decode()


def _authorize(client: TestClient, headers: dict[str, str], phone: Phone, digest: bytes, hash_algo: str) -> str:
    name = service.HASH_OIDS[hash_algo]
    challenge = client.post("/ra/app/challenges", json={"credential_id": phone.credential_id}).json()
    message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                        service.authorization_action(name, [digest]), phone.credential_id or "")
    response = client.post("/csc/v1/credentials/authorize", headers=headers, json={
        "credentialID": phone.credential_id, "numSignatures": 1, "hash": [base64.b64encode(digest).decode()],
        "hashAlgo": hash_algo, "PIN": "482916", "clientData": json.dumps({
            "challenge_id": challenge["challenge_id"], "device_signature": phone.sign(message)})})
    assert response.status_code == 200, response.text
    return response.json()["SAD"]


def _sign(client: TestClient, headers: dict[str, str], phone: Phone, digest: bytes, hash_algo: str,
          sign_algo: str, params: str | None = None) -> httpx.Response:
    body = {"credentialID": phone.credential_id, "SAD": _authorize(client, headers, phone, digest, hash_algo),
            "hash": [base64.b64encode(digest).decode()], "hashAlgo": hash_algo, "signAlgo": sign_algo}
    if params is not None:
        body["signAlgoParams"] = params
    return client.post("/csc/v1/signatures/signHash", headers=headers, json=body)


def test_rsa_credential_signs_pkcs1_v15_and_pss(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform, key_algorithm="RSA_2048")
    info = client.post("/csc/v1/credentials/info", headers=headers,
                       json={"credentialID": phone.credential_id, "certificates": "single"}).json()
    assert info["key"]["len"] == 2048 and "curve" not in info["key"]
    assert {RSA_ENCRYPTION, SHA384_RSA, RSASSA_PSS} <= set(info["key"]["algo"]) and ECDSA_SHA256 not in info["key"]["algo"]
    public_key = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0])).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)

    digest384 = hashlib.sha384(b"order 43: sell 10 2317").digest()
    v15 = _sign(client, headers, phone, digest384, SHA384, SHA384_RSA)
    assert v15.status_code == 200, v15.text
    public_key.verify(base64.b64decode(v15.json()["signatures"][0]), digest384, padding.PKCS1v15(),
                      Prehashed(hashes.SHA384()))
    generic = _sign(client, headers, phone, DOC, SHA256, RSA_ENCRYPTION)
    public_key.verify(base64.b64decode(generic.json()["signatures"][0]), DOC, padding.PKCS1v15(),
                      Prehashed(hashes.SHA256()))
    pss = _sign(client, headers, phone, hashlib.sha256(b"order 44").digest(), SHA256, RSASSA_PSS,
                _pss_params("sha256", 32))
    assert pss.status_code == 200, pss.text
    public_key.verify(base64.b64decode(pss.json()["signatures"][0]), hashlib.sha256(b"order 44").digest(),
                      padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), Prehashed(hashes.SHA256()))
    pss_default = _sign(client, headers, phone, hashlib.sha256(b"order 45").digest(), SHA256, RSASSA_PSS)
    assert pss_default.status_code == 200, pss_default.text
    with platform.engine.connect() as connection:
        logged = connection.execute(text("SELECT sign_algorithm FROM sig_log ORDER BY id")).scalars().all()
    assert logged == [SHA384_RSA, "1.2.840.113549.1.1.11", RSASSA_PSS, RSASSA_PSS]


def test_rsa_pss_parameters_the_hsm_does_not_use_are_refused(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform, key_algorithm="RSA_2048")
    for params in (_pss_params("sha256", 20), _pss_params("sha512", 64), base64.b64encode(b"\x30\x03garbage").decode(),
                   "not base64!"):
        refused = _sign(client, headers, phone, os.urandom(32), SHA256, RSASSA_PSS, params)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", params


def test_sign_algorithms_of_the_other_key_type_are_refused_without_spending_the_sad(
        client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform, key_algorithm="RSA_3072")
    sad = _authorize(client, headers, phone, DOC, SHA256)
    body = {"credentialID": phone.credential_id, "SAD": sad, "hash": [base64.b64encode(DOC).decode()],
            "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256}
    refused = client.post("/csc/v1/signatures/signHash", headers=headers, json=body)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    mismatched = client.post("/csc/v1/signatures/signHash", headers=headers, json={**body, "signAlgo": SHA384_RSA})
    assert mismatched.status_code == 400
    signed = client.post("/csc/v1/signatures/signHash", headers=headers, json={**body, "signAlgo": RSA_ENCRYPTION})
    assert signed.status_code == 200, signed.text
    assert len(base64.b64decode(signed.json()["signatures"][0])) == 384


def test_ec_credentials_refuse_rsa_sign_algorithms(client: TestClient, platform: Platform) -> None:
    headers, phone, _ = _login(client, platform)
    refused = _sign(client, headers, phone, DOC, SHA256, RSA_ENCRYPTION)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


def test_an_unknown_key_algorithm_at_enrolment_is_refused(client: TestClient, platform: Platform) -> None:
    create_broker(client, platform, "B001")
    refused = client.post("/ra/enrolments", headers=officer(platform, "B001"),
                          json={**enrolment_body("A123456789", None), "key_algorithm": "RSA_1024"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"


def test_non_ascii_digit_otps_and_deeply_nested_client_data_get_csc_errors(client: TestClient,
                                                                           platform: Platform) -> None:
    headers, phone, _ = _login(client, platform)
    body = {"credentialID": phone.credential_id, "numSignatures": 1, "hash": [base64.b64encode(DOC).decode()],
            "hashAlgo": SHA256, "PIN": "482916"}
    arabic = client.post("/csc/v1/credentials/authorize", headers=headers, json={**body, "OTP": "١٢٣٤٥٦"})
    assert arabic.status_code == 400 and arabic.json()["error"] == "invalid_otp"
    nested = client.post("/csc/v1/credentials/authorize", headers=headers,
                         json={**body, "clientData": "[" * 1024 + "]" * 1024})
    assert nested.status_code == 400 and nested.json()["error"] == "invalid_request"
    cms = client.post("/signing/cms", json={"credential_id": phone.credential_id, "pin": "482916", "otp": "١٢٣٤٥٦",
                                            "digest": base64.b64encode(DOC).decode()})
    assert cms.status_code == 400 and cms.json()["error"]["code"] == "invalid_otp"
