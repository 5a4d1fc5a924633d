"""The app trusts a seal only if it is one: the issuing CA that certifies the platform seal
also certifies every investor (whose HSM key signs any hash the investor asks for, CSC
signHash) and the OCSP responder, so "chains to the pinned root" alone proves nothing."""

from __future__ import annotations

import base64
import datetime as dt

import httpx
import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca import profiles
from ca.models import IssuedCertificate
from cloudseal.platform import Platform
from core.db import session_scope
from mobile_api import proofs
from mobile_api.client import MobileClient
from mobile_api.proofs import LOG_ENTRY_TYPE, TrustStore, VerificationError, leaf_hash, tree_head_statement
from tests.factories import issue_investor_certificate
from tests.mobile.factories import NATIONAL_IDS, new_investor, publish_meeting


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def forged_proof(key: ec.EllipticCurvePrivateKey, meeting: str, ballot_sha256: str) -> dict:
    """A "counted" proof of a ballot that was never logged: a one-leaf tree whose head ``key`` signs."""
    entry = {"type": LOG_ENTRY_TYPE, "meeting": meeting, "holder": "H001", "ballot_sha256": ballot_sha256,
             "cms_sha256": "0" * 64, "received_at": "2026-01-05T01:02:03.000000Z"}
    head = {"meeting": meeting, "tree_size": 1, "root_hash": base64.b64encode(leaf_hash(rfc8785.dumps(entry))).decode(),
            "issued_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    head["signature"] = base64.b64encode(key.sign(tree_head_statement(head), ec.ECDSA(hashes.SHA256()))).decode()
    return {"status": "counted", "counted": True, "leaf_index": 0, "tree_size": 1, "inclusion_proof": [],
            "tree_head": head, "entry": entry, "voided_items": {}}


def test_the_policy_suffixes_are_the_cas() -> None:
    assert (proofs.INVESTOR_POLICY_SUFFIX, proofs.PLATFORM_POLICY_SUFFIX) == (
        profiles.INVESTOR_SIGNING_POLICY, profiles.PLATFORM_POLICY)


def test_an_investor_or_ocsp_certificate_of_the_platform_ca_is_no_seal(client: TestClient, platform: Platform) -> None:
    published = client.get("/mobile/v1/pki").json()
    pinned = x509.load_pem_x509_certificate(published["root"].encode())
    mallory = ec.generate_private_key(ec.SECP256R1())  # as good as an HSM key driven through signHash
    investor = issue_investor_certificate(platform, key=mallory, reference="INV-666666")
    with session_scope(platform.engine) as session:
        ocsp = session.execute(select(IssuedCertificate.der)
                               .where(IssuedCertificate.profile == profiles.OCSP_SIGNER.name)).scalars().first()
    assert ocsp is not None
    genuine = TrustStore.from_published(published, pinned)
    assert len(genuine.seals) == len(published["seals"]) >= 1
    for impostor in (investor.der, ocsp):
        hostile = {**published, "seals": [*published["seals"], {"serial": "1", "pem": _pem(impostor)}]}
        with pytest.raises(VerificationError, match="not a platform seal"):
            TrustStore.from_published(hostile, pinned)
    public_id = "a" * 32
    with pytest.raises(VerificationError, match="not sealed"):
        proofs.check_counted(genuine, forged_proof(mallory, public_id, "b" * 64), meeting=public_id,
                             ballot_sha256="b" * 64)


def test_the_client_refuses_a_tree_head_sealed_by_an_investor_key(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    pinned = x509.load_pem_x509_certificate(client.get("/mobile/v1/pki").json()["root"].encode())
    mallory = ec.generate_private_key(ec.SECP256R1())
    impostor = _pem(issue_investor_certificate(platform, key=mallory, reference="INV-666666").der)
    ballot_sha256 = "c" * 64

    def hostile(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/proof"):
            return httpx.Response(200, json=forged_proof(mallory, public_id, ballot_sha256))
        answer = client.request(request.method, str(request.url), content=request.content,
                                headers=dict(request.headers))
        body = answer.json()
        if request.url.path.endswith("/pki"):
            body["seals"].append({"serial": "1", "pem": impostor})
        return httpx.Response(answer.status_code, json=body)

    phone = MobileClient(httpx.Client(base_url="http://testserver", transport=httpx.MockTransport(hostile)),
                         device_key=alice.device_key, pinned_root=pinned)
    phone.credential_id = alice.credential_id
    phone.login()
    with pytest.raises(VerificationError):
        phone.verify_counted(public_id, ballot_sha256)


@pytest.mark.parametrize("damage", ["no_root", "not_pem", "seals_not_a_list", "seal_without_pem"])
def test_malformed_trust_material_or_proofs_are_verification_errors(client: TestClient, damage: str) -> None:
    published = client.get("/mobile/v1/pki").json()
    broken = {"no_root": {k: v for k, v in published.items() if k != "root"},
              "not_pem": {**published, "issuing": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
              "seals_not_a_list": {**published, "seals": 7},
              "seal_without_pem": {**published, "seals": [{"serial": "1"}]}}[damage]
    with pytest.raises(VerificationError, match="malformed"):
        TrustStore.from_published(broken)
    trust = TrustStore.from_published(published)
    for proof in ({}, {"entry": {}, "tree_head": None}, {**forged_proof(ec.generate_private_key(ec.SECP256R1()), "a" * 32,
                                                                        "b" * 64), "inclusion_proof": ["%%"]}):
        with pytest.raises(VerificationError):
            proofs.check_counted(trust, proof, meeting="a" * 32, ballot_sha256="b" * 64)
    with pytest.raises(VerificationError, match="malformed"):
        proofs.check_receipt(trust, {"receipt": {"received_at": 5}}, meeting="a" * 32, holder_no="H001",
                             payload_sha256="b" * 64)
