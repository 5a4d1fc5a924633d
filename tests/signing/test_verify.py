"""Verification for brokers: POST /signing/verify, the evidence log, and the in-process verifier.

The signing time comes from the platform's signature log, never from the signer's claim;
each failure has its stable reason code and none is ever a 500.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ca import service as ca_service
from ca.ocsp import issuer_hashes
from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.auth import Role
from core.db import session_scope, utcnow
from ra import credentials as ra_credentials
from ra import devices
from signing.cms import (
    assemble_detached_cms,
    build_signed_attributes,
    sign_detached,
    signed_attributes_digest,
)
from signing.evidence import platform_verifier
from signing.revocation import CertificateStatus, CrlRevocation, OcspRevocation
from signing.service import authorization_action
from signing.verifier import Verifier
from signing.verify_api import verify_router
from tests.conftest import bearer
from tests.factories import OPERATOR, issue_investor_certificate, load, revoke
from tests.ra.factories import NATIONAL_IDS, create_broker, enrol_and_activate
from tests.ra.service_flow import activated
from tests.signing.test_cms import Signer, ca_chain, hsm_signer, openssl, rogue_ca
from tests.signing.test_sole_control import authorize, certificate
from tests.signing.test_sole_control import sign as sign_with_sad
from tests.support.servers import LiveServer

ORDER = b'{"broker":"B001","account":"A123456789-1","side":"buy","symbol":"2330","quantity":1000}'
TAMPERED = ORDER.replace(b"1000", b"9000")
GARBAGE = [b"", b"\x30", b"\x30\x82\xff\xff" + b"\0" * 64, b"not a cms at all", "é",
           "-----BEGIN CMS-----\n!!!\n-----END CMS-----"]


@dataclasses.dataclass(frozen=True)
class Order:
    """An order, its detached CMS, and who signed it."""

    document: bytes
    cms: bytes
    credential_id: str
    certificate: x509.Certificate


def verify_app(platform: Platform) -> FastAPI:
    """The app, with the verification router mounted unless the app already does it."""
    app = create_app(platform=platform, background_refresh=False)
    if not any(getattr(route, "path", None) == "/signing/verify" for route in app.routes):
        app.include_router(verify_router)
    return app


@pytest.fixture
def api(platform: Platform) -> Iterator[TestClient]:
    with TestClient(verify_app(platform)) as client:
        yield client


@pytest.fixture
def any_api(any_platform: Platform) -> Iterator[TestClient]:
    with TestClient(verify_app(any_platform)) as client:
        yield client


def signed_order(platform: Platform, document: bytes = ORDER, id_number: str = NATIONAL_IDS[0]) -> Order:
    """The order app's way: signed attributes built locally, their digest signed through the
    SAD flow (so the signature log records it), the CMS assembled around the signature."""
    credential_id, phone = activated(platform, id_number=id_number)
    signer_cert = certificate(platform, credential_id)
    attributes = build_signed_attributes(hashlib.sha256(document).digest(), "sha256", signer_cert, utcnow())
    to_sign = signed_attributes_digest(attributes, "sha256")
    signed = sign_with_sad(platform, credential_id, authorize(platform, phone, [to_sign]), [to_sign])
    cms = assemble_detached_cms(attributes, signed[0].signature, signer_cert, ca_chain(platform), "sha256", "ECDSA")
    return Order(document, cms, credential_id, signer_cert)


def post_verify(client: TestClient | httpx.Client, platform: Platform, cms: bytes | str, *,
                document: bytes | None = None, digest: str | None = None, broker: str = "B001",
                role: Role = Role.BROKER_BACKOFFICE) -> httpx.Response:
    body: dict[str, str] = {"cms": cms if isinstance(cms, str) else base64.b64encode(cms).decode()}
    if document is not None:
        body["content_base64"] = base64.b64encode(document).decode()
    if digest is not None:
        body["digest"] = digest
    headers = bearer(platform, role, tenant=broker if role is Role.BROKER_BACKOFFICE else None)
    return client.post("/signing/verify", json=body, headers=headers)


def verified(client: TestClient | httpx.Client, platform: Platform, cms: bytes | str, **kw: object) -> dict:
    response = post_verify(client, platform, cms, **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()


def when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def next_second() -> None:
    """Wait for the next whole second: revocation times have whole seconds."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.02)


def revoke_credential(platform: Platform, credential_id: str, reason: str = "keyCompromise") -> None:
    with session_scope(platform.engine) as session:
        credential = ra_credentials.get_credential(session, credential_id)
        ra_credentials.revoke_credential(session, platform.pki, actor=OPERATOR, credential=credential, reason=reason)


def hold(platform: Platform, signer: Signer) -> None:
    with session_scope(platform.engine) as session:
        ca_service.revoke_certificate(session, platform.pki, actor=OPERATOR, serial=format(
            signer.certificate.serial_number, "x"), reason="certificateHold", managed_ok=True)


def sign_directly(signer: Signer, document: bytes = ORDER, signing_time: dt.datetime | None = None) -> bytes:
    """A CMS made with the HSM key itself, bypassing the signing service: the log never sees it."""
    return sign_detached(hashlib.sha256(document).digest(), "sha256", signer.certificate, signer.chain,
                         signer.key, signing_time)


def foreign_cms(tmp_path: Path, document: bytes = ORDER) -> bytes:
    """A CMS by an investor-looking certificate of another CA, all made by openssl."""
    ca = rogue_ca(tmp_path, "/C=TW/O=Elsewhere/CN=Elsewhere Issuing CA")
    (tmp_path / "leaf.ext").write_text("keyUsage=critical,digitalSignature,nonRepudiation\n")
    (tmp_path / "DOC").write_bytes(document)
    steps = [
        ("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         tmp_path / "leaf.key", "-out", tmp_path / "leaf.csr", "-subj", "/C=TW/CN=Chen Mei-Ling/serialNumber=INV-000001"),
        ("x509", "-req", "-in", tmp_path / "leaf.csr", "-CA", ca.cert_file, "-CAkey", ca.key_file,
         "-CAcreateserial", "-days", "1", "-extfile", tmp_path / "leaf.ext", "-out", tmp_path / "leaf.pem"),
        ("cms", "-sign", "-binary", "-cades", "-md", "sha256", "-in", tmp_path / "DOC", "-signer",
         tmp_path / "leaf.pem", "-inkey", tmp_path / "leaf.key", "-certfile", ca.cert_file,
         "-outform", "DER", "-out", tmp_path / "foreign.der"),
    ]
    for step in steps:
        made = openssl(*step)
        assert made.returncode == 0, made.stderr
    return (tmp_path / "foreign.der").read_bytes()


# The API ------------------------------------------------------------------------------------

def test_an_order_signed_through_the_signing_service_is_valid_at_its_logged_time(
    any_platform: Platform, any_api: TestClient
) -> None:
    order = signed_order(any_platform)
    result = verified(any_api, any_platform, order.cms, document=order.document)
    assert result["valid"] is True and result["reason"] is None
    assert result["signing_time_source"] == "platform_log" and result["logged"] is True
    assert result["signer"]["serial"] == format(order.certificate.serial_number, "x")
    assert result["signer"]["reference"].startswith("INV-")
    assert result["signer"]["subject"] == order.certificate.subject.rfc4514_string()
    assert result["status_at_signing"] == result["status_now"] == "good"
    assert len(result["chain"]) == 3 and result["chain"][0] == result["signer"]["subject"]
    assert result["document_digest"] == hashlib.sha256(ORDER).hexdigest()
    claimed = when(result["claimed_signing_time"])
    assert claimed is not None and claimed <= when(result["signing_time"]) <= when(result["checked_at"])


def test_an_order_signed_by_post_signing_cms_verifies_at_its_logged_time(platform: Platform, api: TestClient) -> None:
    create_broker(api, platform, "B001")
    _, phone = enrol_and_activate(api, platform)
    digest = hashlib.sha256(ORDER).digest()
    challenge = api.post("/ra/app/challenges", json={"credential_id": phone.credential_id}).json()
    message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                        authorization_action("sha256", [digest]), phone.credential_id or "")
    signed = api.post("/signing/cms", json={
        "credential_id": phone.credential_id, "pin": "482916", "digest": base64.b64encode(digest).decode(),
        "challenge_id": challenge["challenge_id"], "device_signature": phone.sign(message)})
    assert signed.status_code == 200, signed.text
    result = verified(api, platform, signed.json()["cms"], document=ORDER)
    assert result["valid"] is True and (result["logged"], result["signing_time_source"]) == (True, "platform_log")


def test_a_tampered_order_is_a_digest_mismatch(any_platform: Platform, any_api: TestClient) -> None:
    order = signed_order(any_platform)
    for request in ({"document": TAMPERED}, {"digest": hashlib.sha256(TAMPERED).hexdigest()}):
        result = verified(any_api, any_platform, order.cms, **request)
        assert (result["valid"], result["reason"]) == (False, "digest_mismatch")
    assert verified(any_api, any_platform, order.cms,
                    digest=base64.b64encode(hashlib.sha256(ORDER).digest()).decode())["valid"] is True


def test_a_cms_from_a_certificate_of_another_ca_is_an_untrusted_chain(
    platform: Platform, api: TestClient, tmp_path: Path
) -> None:
    result = verified(api, platform, foreign_cms(tmp_path), document=ORDER)
    assert (result["valid"], result["reason"]) == (False, "untrusted_chain")
    assert result["signer"]["reference"] == "INV-000001" and result["logged"] is False


def test_a_signature_made_before_a_revocation_stays_valid_with_the_revocation_shown(
    any_platform: Platform, any_api: TestClient
) -> None:
    order = signed_order(any_platform)
    next_second()
    revoke_credential(any_platform, order.credential_id)
    result = verified(any_api, any_platform, order.cms, document=order.document)
    assert result["valid"] is True and result["reason"] is None
    assert result["signing_time_source"] == "platform_log"
    assert (result["status_at_signing"], result["status_now"]) == ("good", "revoked")
    assert result["revocation_reason"] == "keyCompromise"
    assert when(result["revocation_time"]) > when(result["signing_time"])


def test_a_cms_the_log_has_no_record_of_is_reported_unlogged_and_judged_now(
    platform: Platform, api: TestClient
) -> None:
    claimed = utcnow().replace(microsecond=0) - dt.timedelta(seconds=30)
    result = verified(api, platform, sign_directly(hsm_signer(platform), signing_time=claimed), document=ORDER)
    assert result["valid"] is True
    assert (result["logged"], result["signing_time_source"], result["signing_time"]) == (False, "none", None)
    assert when(result["claimed_signing_time"]) == claimed
    assert (result["status_at_signing"], result["status_now"]) == ("unknown", "good")


def test_the_signers_backdated_claim_never_sets_the_signing_time(platform: Platform, api: TestClient) -> None:
    """A holder of a revoked key backdates signingTime: the API judges the unlogged signature
    now (revoked); only a verifier without the log, trusting the claim, would accept it."""
    signer = hsm_signer(platform)
    backdated = utcnow() - dt.timedelta(seconds=30)  # after notBefore, before the revocation
    next_second()
    with session_scope(platform.engine) as session:
        ca_service.revoke_certificate(session, platform.pki, actor=OPERATOR, serial=format(
            signer.certificate.serial_number, "x"), reason="keyCompromise", managed_ok=True)
    cms = sign_directly(signer, signing_time=backdated)
    result = verified(api, platform, cms, document=ORDER)
    assert (result["valid"], result["reason"], result["signing_time_source"]) == (False, "revoked", "none")
    with session_scope(platform.engine) as session:
        logging_verifier = platform_verifier(session, platform.pki)
        claim_based = Verifier(logging_verifier.trust_anchors, logging_verifier.revocation,
                               intermediates=logging_verifier.intermediates)
        trusting_the_claim = claim_based.verify(cms, content=ORDER)
    assert trusting_the_claim.valid and trusting_the_claim.signing_time_source == "signer_claim"


def test_a_certificate_on_hold_at_signing_is_on_hold(platform: Platform, api: TestClient) -> None:
    signer = hsm_signer(platform)
    before_hold = utcnow() - dt.timedelta(seconds=1)
    next_second()
    hold(platform, signer)
    cms = sign_directly(signer)
    result = verified(api, platform, cms, document=ORDER)
    assert (result["valid"], result["reason"], result["status_now"]) == (False, "on_hold", "on_hold")
    assert result["revocation_reason"] == "certificateHold"
    with session_scope(platform.engine) as session:
        verifier = platform_verifier(session, platform.pki)
        assert verifier.verify(cms, content=ORDER, at=utcnow()).reason == "on_hold"
        earlier = verifier.verify(cms, content=ORDER, at=before_hold)
    assert earlier.valid and (earlier.status_at_signing, earlier.status_now) == ("good", "on_hold")


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_cms_is_malformed_never_a_500(platform: Platform, api: TestClient, garbage: bytes | str) -> None:
    result = verified(api, platform, garbage if isinstance(garbage, str) else base64.b64encode(garbage).decode(),
                      document=ORDER)
    assert (result["valid"], result["reason"]) == (False, "malformed")


def test_a_truncated_cms_is_malformed_never_a_500(platform: Platform, api: TestClient) -> None:
    cms = sign_directly(hsm_signer(platform))
    for cut in range(0, len(cms), 97):
        response = post_verify(api, platform, cms[:cut] or b"\x30", document=ORDER)
        assert response.status_code == 200, response.text
        assert response.json()["reason"] == "malformed"


@pytest.mark.parametrize("body, code", [
    ({"content_base64": "b3JkZXI=", "digest": "00" * 32}, "invalid_request"),
    ({}, "invalid_request"),
    ({"content_base64": "not base64!"}, "invalid_content"),
    ({"digest": "abc"}, "invalid_digest"),
    ({"digest": "00" * 32, "digest_algorithm": "md5"}, "unsupported_algorithm"),
])
def test_requests_that_do_not_name_one_document_get_the_error_envelope(
    platform: Platform, api: TestClient, body: dict, code: str
) -> None:
    response = api.post("/signing/verify", json={"cms": "MIIB", **body},
                        headers=bearer(platform, Role.BROKER_BACKOFFICE, tenant="B001"))
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_a_body_that_is_not_json_is_a_400(platform: Platform, api: TestClient) -> None:
    response = api.post("/signing/verify", content=b"{not json",
                        headers={**bearer(platform, Role.BROKER_BACKOFFICE, tenant="B001"),
                                 "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("role", [Role.RA_OFFICER, Role.ISSUER_HOST, Role.AUDITOR, Role.INVESTOR])
def test_other_roles_may_neither_verify_nor_read_evidence(platform: Platform, api: TestClient, role: Role) -> None:
    headers = bearer(platform, role, tenant="B001" if role in (Role.RA_OFFICER, Role.ISSUER_HOST) else None)
    posted = api.post("/signing/verify", json={"cms": "MIIB", "digest": "00" * 32}, headers=headers)
    listed = api.get("/signing/verifications", headers=headers)
    for response in (posted, listed):
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden_role"
    assert api.post("/signing/verify", json={"cms": "MIIB", "digest": "00" * 32}).status_code == 401


def evidence(client: TestClient, platform: Platform, broker: str | None, **params: object) -> dict:
    role = Role.BROKER_BACKOFFICE if broker else Role.OPERATOR
    response = client.get("/signing/verifications", params=params, headers=bearer(platform, role, tenant=broker))
    assert response.status_code == 200, response.text
    return response.json()


def test_every_verification_is_recorded_as_the_brokers_evidence(any_platform: Platform, any_api: TestClient) -> None:
    order = signed_order(any_platform)
    good = verified(any_api, any_platform, order.cms, document=order.document)
    verified(any_api, any_platform, order.cms, document=TAMPERED)
    verified(any_api, any_platform, "garbage", digest="00" * 32)
    page = evidence(any_api, any_platform, "B001")
    assert page["total"] == 3 and [e["reason"] for e in page["items"]] == ["malformed", "digest_mismatch", None]
    newest_valid = page["items"][2]
    assert newest_valid["id"] == good["evidence_id"] and newest_valid["valid"] is True
    assert newest_valid["signer_serial"] == good["signer"]["serial"]
    assert newest_valid["signer_reference"] == good["signer"]["reference"]
    assert newest_valid["signing_time_source"] == "platform_log" and newest_valid["checked_by"].endswith(":alice")
    assert when(newest_valid["signing_time"]) == when(good["signing_time"])
    assert newest_valid["cms_sha256"] == hashlib.sha256(order.cms).hexdigest()
    by_document = evidence(any_api, any_platform, "B001", document_digest=hashlib.sha256(ORDER).hexdigest().upper())
    assert [e["id"] for e in by_document["items"]] == [good["evidence_id"]]
    second_page = evidence(any_api, any_platform, "B001", offset=1, limit=1)
    assert second_page["total"] == 3 and [e["reason"] for e in second_page["items"]] == ["digest_mismatch"]


def test_another_brokers_evidence_is_never_visible(platform: Platform, api: TestClient) -> None:
    order = signed_order(platform)
    mine = verified(api, platform, order.cms, document=order.document, broker="B001")
    theirs = verified(api, platform, order.cms, document=order.document, broker="B002")
    digest = hashlib.sha256(ORDER).hexdigest()
    assert [e["id"] for e in evidence(api, platform, "B001")["items"]] == [mine["evidence_id"]]
    assert [e["id"] for e in evidence(api, platform, "B002", document_digest=digest)["items"]] == [theirs["evidence_id"]]
    assert evidence(api, platform, "B003", document_digest=digest) == {"items": [], "total": 0, "offset": 0, "limit": 50}
    assert evidence(api, platform, None)["total"] == 2  # operators see every broker's


def test_an_operator_may_verify_and_its_evidence_names_no_broker(platform: Platform, api: TestClient) -> None:
    order = signed_order(platform)
    result = verified(api, platform, order.cms, document=order.document, role=Role.OPERATOR)
    assert result["valid"] is True
    assert evidence(api, platform, None)["items"][0]["broker_code"] is None
    assert evidence(api, platform, "B001")["total"] == 0


# The in-process verifier ------------------------------------------------------------------------

def test_the_verifier_never_raises_for_bad_input(platform: Platform) -> None:
    signer = hsm_signer(platform)
    cms = sign_directly(signer)
    verifier = Verifier.from_chain_pem(b"".join(c.public_bytes(Encoding.PEM) for c in signer.chain),
                                       revocation=_AlwaysGood())
    result = verifier.verify(cms, content=ORDER)
    assert result.valid and json.loads(json.dumps(result.to_json()))["signer"]["serial"] == result.signer.serial
    calls = [
        dict(cms=None, content=ORDER), dict(cms=12345, content=ORDER), dict(cms=cms),
        dict(cms=cms, content=ORDER, digest=b"\0" * 32), dict(cms=cms, content="text, not bytes"),
        dict(cms=cms, digest="00" * 32), dict(cms=cms, digest=b"\0" * 20), dict(cms=cms, digest=b"\0" * 32,
                                                                                  digest_algorithm="md5"),
        dict(cms=cms, digest=hashlib.sha384(ORDER).digest(), digest_algorithm="sha384"),
        dict(cms=cms[:-3], content=ORDER), dict(cms=cms.decode("latin-1"), content=ORDER),
    ]
    reasons = [verifier.verify(call.pop("cms"), **call).reason for call in calls]  # type: ignore[arg-type]
    assert reasons == ["malformed", "malformed", "malformed", "malformed", "malformed", "malformed",
                       "digest_mismatch", "unsupported_algorithm", "digest_mismatch", "malformed", "malformed"]
    assert verifier.verify(cms, content=ORDER, at=dt.datetime.now()).valid  # naive: taken as UTC


class _AlwaysGood:
    """A revocation source for tests about everything but revocation."""

    def status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CertificateStatus:
        return CertificateStatus("good", source="test")


@pytest.fixture
def live(platform: Platform) -> Iterator[LiveServer]:
    with LiveServer(verify_app(platform)) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A client on the live server that remembers the path of every request it sends."""
    seen: list[str] = []
    with httpx.Client(base_url=live.url, timeout=10,
                      event_hooks={"request": [lambda request: seen.append(request.url.path)]}) as client:
        yield client, seen


def crl_urls(live: LiveServer) -> list[str]:
    return [f"{live.url}/pki/crl/issuing.crl", f"{live.url}/pki/crl/root.crl"]


def test_ocsp_answers_are_cached_until_their_next_update(
    platform: Platform, live: LiveServer, http: tuple[httpx.Client, list[str]]
) -> None:
    client, seen = http
    order = signed_order(platform)
    verifier = Verifier.from_chain_pem(client.get("/pki/chain.pem").content, OcspRevocation(client, live.url))
    assert verifier.verify(order.cms, content=order.document).valid
    assert seen.count("/pki/ocsp") == 2  # the signer's certificate and the issuing CA's
    assert verifier.verify(order.cms, content=order.document).valid
    assert seen.count("/pki/ocsp") == 2  # both answers still fresh
    issuing = ca_chain(platform)[0]
    clock = [utcnow() + dt.timedelta(hours=23)]
    source = OcspRevocation(client, live.url, clock=lambda: clock[0])
    assert source.status(order.certificate, issuing).status == "good"
    assert source.status(order.certificate, issuing).status == "good"
    assert seen.count("/pki/ocsp") == 3
    clock[0] += dt.timedelta(hours=2)  # past nextUpdate: asked again (and the old answer is stale)
    assert source.status(order.certificate, issuing).status == "unknown"
    assert seen.count("/pki/ocsp") == 4


def test_crls_are_cached_until_their_next_update(
    platform: Platform, live: LiveServer, http: tuple[httpx.Client, list[str]]
) -> None:
    client, seen = http
    order = signed_order(platform)
    verifier = Verifier.from_chain_pem(client.get("/pki/chain.pem").content, CrlRevocation(client, crl_urls(live)))
    for _ in range(3):
        assert verifier.verify(order.cms, content=order.document).valid
    assert seen.count("/pki/crl/issuing.crl") == 1 and seen.count("/pki/crl/root.crl") == 1


def test_in_process_verifiers_agree_with_the_api_on_reason_codes(
    platform: Platform, live: LiveServer, http: tuple[httpx.Client, list[str]], tmp_path: Path
) -> None:
    client, _ = http
    logged = signed_order(platform)
    revoked_later = signed_order(platform, id_number=NATIONAL_IDS[1])
    held = hsm_signer(platform)
    next_second()
    revoke_credential(platform, revoked_later.credential_id, "affiliationChanged")
    hold(platform, held)
    cases = {
        "valid": (logged.cms, ORDER), "tampered": (logged.cms, TAMPERED),
        "foreign": (foreign_cms(tmp_path), ORDER), "garbage": (b"\x30\x82\x01", ORDER),
        "revoked after signing": (revoked_later.cms, ORDER), "on hold at signing": (sign_directly(held), ORDER),
    }
    chain_pem = client.get("/pki/chain.pem").content
    verifiers = {"ocsp": Verifier.from_chain_pem(chain_pem, OcspRevocation(client, live.url)),
                 "crl": Verifier.from_chain_pem(chain_pem, CrlRevocation(client, crl_urls(live)))}
    outcomes: dict[str, set[tuple]] = {}
    for name, (cms, document) in cases.items():
        api_result = verified(client, platform, cms, document=document)
        seen = {(api_result["valid"], api_result["reason"], api_result["status_now"])}
        for verifier in verifiers.values():
            local = verifier.verify(cms, content=document, at=when(api_result["signing_time"]))
            seen.add((local.valid, local.reason, local.status_now))
        outcomes[name] = seen
    assert outcomes == {
        "valid": {(True, None, "good")}, "tampered": {(False, "digest_mismatch", "unknown")},
        "foreign": {(False, "untrusted_chain", "unknown")}, "garbage": {(False, "malformed", "unknown")},
        "revoked after signing": {(True, None, "revoked")}, "on hold at signing": {(False, "on_hold", "on_hold")},
    }


# Revocation sources refuse what the CA did not sign ----------------------------------------------

def _stranger(name: str, *, ocsp_signing: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = utcnow()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=1)))
    if ocsp_signing:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(key, hashes.SHA256()), key


def _serving(body: bytes) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda _request: httpx.Response(200, content=body)))


def test_an_ocsp_answer_not_signed_by_the_ca_or_its_responder_is_not_believed(platform: Platform) -> None:
    revoked = load(issue_investor_certificate(platform, reference="INV-000555"))
    revoke(platform, format(revoked.serial_number, "x"))
    issuing = ca_chain(platform)[0]
    responder, key = _stranger("Friendly OCSP", ocsp_signing=True)
    now = utcnow()
    forged = (ocsp.OCSPResponseBuilder()
              .add_response(cert=revoked, issuer=issuing, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
                            this_update=now, next_update=now + dt.timedelta(hours=1), revocation_time=None,
                            revocation_reason=None)
              .responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
              .sign(key, hashes.SHA256())).public_bytes(Encoding.DER)
    # The same answer claiming the issuing CA as its responder (both key hashes are 20 bytes).
    claiming_the_ca = forged.replace(issuer_hashes(responder, hashes.SHA1())[1], issuer_hashes(issuing, hashes.SHA1())[1])
    refusals = []
    for answer in (forged, claiming_the_ca):
        with _serving(answer) as client:
            status = OcspRevocation(client, "http://pki.test").status(revoked, issuing)
        refusals.append((status.status, status.detail))
    assert refusals == [("unknown", "the responder was not certified by the issuing CA for OCSP signing"),
                        ("unknown", "the response's signature does not verify")]


def test_a_crl_not_signed_by_the_issuing_ca_is_not_believed(platform: Platform) -> None:
    revoked = load(issue_investor_certificate(platform, reference="INV-000556"))
    revoke(platform, format(revoked.serial_number, "x"))
    issuing = ca_chain(platform)[0]
    _, key = _stranger("Not the CA")
    now = utcnow()
    empty_crl = (x509.CertificateRevocationListBuilder().issuer_name(issuing.subject).last_update(now)
                 .next_update(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    with _serving(empty_crl.public_bytes(Encoding.DER)) as client:
        status = CrlRevocation(client, ["http://pki.test/pki/crl/issuing.crl"]).status(revoked, issuing)
    assert status.status == "unknown" and "not signed" in (status.detail or "")



def test_a_revocation_status_that_cannot_be_learnt_is_not_valid(platform: Platform) -> None:
    order = signed_order(platform)
    issuing, root = ca_chain(platform)
    for answer in (b"not an OCSP response", b""):
        with _serving(answer) as client:
            verifier = Verifier([root], OcspRevocation(client, "http://pki.test"), intermediates=[issuing])
            result = verifier.verify(order.cms, content=order.document)
        assert (result.valid, result.reason, result.status_now) == (False, "revocation_unknown", "unknown")
        assert "could not be learnt" in (result.message or "")
