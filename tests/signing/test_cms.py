"""Detached CAdES-BES CMS: openssl accepts ours, we refuse everything that is not one of ours."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import random
import subprocess
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient

from ca import service
from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope
from hsm_sim.base import DigestAlgorithm, KeyAlgorithm, Mechanism
from hsm_sim.facade import hsm_private_key
from signing.cms import (
    CmsError,
    ParsedCms,
    assemble_detached_cms,
    build_signed_attributes,
    chain_to,
    parse_detached_cms,
    sign_detached,
    signed_attributes_digest,
    verify_cms_signature,
)
from tests.factories import OPERATOR, investor_subject, issue_investor_certificate, load
from tests.interop.conftest import require_tool

DOCUMENT = b'{"meeting":"2330-2026-AGM","holder":"INV-000001","choices":{"1":"CFOR"}}'
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"


@dataclasses.dataclass(frozen=True)
class Signer:
    """An investor's HSM-held key, its certificate and the CA chain above it."""

    certificate: x509.Certificate
    chain: list[x509.Certificate]  # issuing, root
    key: ec.EllipticCurvePrivateKey
    label: str
    owner: str

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]


def ca_chain(platform: Platform) -> list[x509.Certificate]:
    with session_scope(platform.engine) as session:
        return [platform.pki.ca_certificate(platform.pki.load_ca(session, name)) for name in ("issuing", "root")]


def hsm_signer(platform: Platform, algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256) -> Signer:
    """Generate the investor's key in the platform's HSM and have the CA certify it."""
    reference = uuid.uuid4().hex[:12]  # unique on a PKCS#11 token shared by the whole run
    label, owner = f"investor/{reference}", f"investor:{reference}"
    platform.keystore.generate_key_pair(label, owner, algorithm)
    with session_scope(platform.engine) as session:
        row = service.issue_certificate(
            session, platform.pki, actor=OPERATOR, ca_name="issuing", profile_name="investor_signing",
            subject=investor_subject(reference=f"INV-{reference}"),
            public_key=platform.keystore.public_key(label), key_label=label,
        )
    key = hsm_private_key(platform.keystore, label, owner)
    return Signer(load(row), ca_chain(platform), key, label, owner)  # type: ignore[arg-type]


def sign(signer: Signer, document: bytes = DOCUMENT, digest_algorithm: str = "sha256", **kw: object) -> bytes:
    digest = hashlib.new(digest_algorithm, document).digest()
    return sign_detached(digest, digest_algorithm, signer.certificate, signer.chain, signer.key, **kw)  # type: ignore[arg-type]


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, text=True, timeout=60)


def chain_pem(signer: Signer) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in signer.chain)


def openssl_cms_verify(tmp_path: Path, cms_der: bytes, document: bytes, chain_pem: bytes,
                       *extra: str) -> subprocess.CompletedProcess[str]:
    """``openssl cms -verify`` of a detached signature against a PEM chain (issuing + root)."""
    (tmp_path / "sig.der").write_bytes(cms_der)
    (tmp_path / "DOC").write_bytes(document)
    (tmp_path / "chain.pem").write_bytes(chain_pem)
    return openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "sig.der",
                   "-content", tmp_path / "DOC", "-CAfile", tmp_path / "chain.pem", *extra,
                   "-out", tmp_path / "out")


def expect_code(code: str, call: object, *args: object) -> CmsError:
    with pytest.raises(CmsError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.code == code, caught.value.message
    return caught.value


def rebuild(cms_der: bytes, change: object) -> bytes:
    """The CMS after ``change`` edits its asn1crypto SignedData in place."""
    content_info = asn1_cms.ContentInfo.load(cms_der)
    change(content_info["content"])  # type: ignore[operator]
    return asn1_cms.ContentInfo({"content_type": "signed_data", "content": content_info["content"]}).dump(force=True)


# Interop: openssl accepts what the HSM signed ------------------------------------------------

@pytest.mark.parametrize("digest_algorithm", ["sha256", "sha384", "sha512"])
def test_openssl_verifies_a_detached_cms_signed_by_the_hsm(
    any_platform: Platform, tmp_path: Path, digest_algorithm: str
) -> None:
    signer = hsm_signer(any_platform)
    cms_der = sign(signer, digest_algorithm=digest_algorithm)
    with TestClient(create_app(platform=any_platform, background_refresh=False)) as client:
        published_chain = client.get("/pki/chain.pem").content
    # The issue's command as is (openssl 3's default smimesign purpose accepts a certificate
    # without EKU whose key usage has digitalSignature), and with -purpose any.
    for extra in ((), ("-purpose", "any")):
        result = openssl_cms_verify(tmp_path, cms_der, DOCUMENT, published_chain, *extra)
        assert result.returncode == 0, result.stderr
        assert "Verification successful" in result.stderr
        assert (tmp_path / "out").read_bytes() == DOCUMENT


def test_openssl_shows_the_cades_signed_attributes(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "sig.der").write_bytes(sign(hsm_signer(platform)))
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "sig.der")
    assert printed.returncode == 0, printed.stderr
    assert SIGNING_CERTIFICATE_V2 in printed.stdout
    for attribute in ("contentType", "messageDigest", "signingTime"):
        assert attribute in printed.stdout
    assert "eContent: <ABSENT>" in printed.stdout


@pytest.mark.parametrize("mechanism", [Mechanism.RSA_PKCS1V15, Mechanism.RSA_PSS])
def test_openssl_verifies_rsa_signatures_with_their_parameters(
    platform: Platform, tmp_path: Path, mechanism: Mechanism
) -> None:
    signer = hsm_signer(platform, KeyAlgorithm.RSA_2048)
    cms_der = sign(signer, digest_algorithm="sha384", signature_algorithm=mechanism)
    result = openssl_cms_verify(tmp_path, cms_der, DOCUMENT, chain_pem(signer), "-purpose", "any")
    assert result.returncode == 0, result.stderr
    parsed = parse_detached_cms(cms_der)
    assert parsed.signature_algorithm == mechanism.value
    verify_cms_signature(parsed, hashlib.sha384(DOCUMENT).digest())


def test_openssl_refuses_a_cms_over_another_document(platform: Platform, tmp_path: Path) -> None:
    signer = hsm_signer(platform)
    result = openssl_cms_verify(tmp_path, sign(signer), DOCUMENT + b" ", chain_pem(signer), "-purpose", "any")
    assert result.returncode != 0
    assert "Verification successful" not in result.stderr


def openssl_signed(tmp_path: Path, digest_algorithm: str) -> bytes:
    """A detached CAdES CMS over DOCUMENT made by ``openssl cms -sign`` with a CA of its own."""
    ca = rogue_ca(tmp_path, "/C=TW/O=Elsewhere/CN=Elsewhere CA")
    (tmp_path / "DOC").write_bytes(DOCUMENT)
    made = openssl("cms", "-sign", "-binary", "-cades", "-md", digest_algorithm, "-in", tmp_path / "DOC",
                   "-signer", ca.cert_file, "-inkey", ca.key_file, "-outform", "DER", "-out", tmp_path / "o.der")
    assert made.returncode == 0, made.stderr
    return (tmp_path / "o.der").read_bytes()


def test_a_cms_made_by_openssl_parses_and_verifies(tmp_path: Path) -> None:
    parsed = parse_detached_cms(openssl_signed(tmp_path, "sha384"))
    assert parsed.digest_algorithm == "sha384" and parsed.signing_certificate_hash is not None
    verify_cms_signature(parsed, hashlib.sha384(DOCUMENT).digest())


# The split flow: attributes, digest to sign elsewhere, assembly ------------------------------

def test_signature_made_elsewhere_over_the_attributes_digest_assembles_into_a_valid_cms(platform: Platform) -> None:
    """The CSC path: the HSM signs the attributes' digest; hsm_sim's enums work as names."""
    signer = hsm_signer(platform)
    digest = hashlib.sha256(DOCUMENT).digest()
    when = dt.datetime(2026, 5, 20, 17, 30, 15, 123456, tzinfo=ZoneInfo("Asia/Taipei"))
    attrs = build_signed_attributes(digest, DigestAlgorithm.SHA256, signer.certificate, when)
    to_sign = signed_attributes_digest(attrs, DigestAlgorithm.SHA256)
    signature = platform.keystore.sign(signer.label, signer.owner, to_sign, DigestAlgorithm.SHA256, Mechanism.ECDSA)
    cms_der = assemble_detached_cms(attrs, signature, signer.certificate, signer.chain,
                                    DigestAlgorithm.SHA256, Mechanism.ECDSA)
    parsed = parse_detached_cms(cms_der)
    assert parsed.signed_attributes == attrs
    assert parsed.signing_time == dt.datetime(2026, 5, 20, 9, 30, 15, tzinfo=dt.timezone.utc)
    assert parsed.signer_certificate == signer.certificate
    assert set(parsed.certificates) == set(signer.chain)
    verify_cms_signature(parsed, digest)
    assert chain_to(parsed, [signer.root]) == [signer.certificate, *signer.chain]


def test_unsupported_digest_algorithms_are_refused_when_building() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "x")
    expect_code("unsupported_algorithm", build_signed_attributes, b"\0" * 20, "sha1", cert,
                dt.datetime.now(dt.timezone.utc))


# Verification --------------------------------------------------------------------------------

@pytest.fixture
def signer(platform: Platform) -> Signer:
    return hsm_signer(platform)


def test_a_good_signature_verifies_and_chains_to_the_root(signer: Signer) -> None:
    parsed = parse_detached_cms(sign(signer))
    verify_cms_signature(parsed, hashlib.sha256(DOCUMENT).digest())
    assert chain_to(parsed, [signer.root]) == [signer.certificate, *signer.chain]


def test_a_remembered_path_serves_only_the_same_certificates_and_anchors(signer: Signer) -> None:
    parsed = parse_detached_cms(sign(signer))
    first = chain_to(parsed, [signer.root])
    assert chain_to(parsed, [signer.root]) == first == [signer.certificate, *signer.chain]
    # The same signer judged against another anchor, or without the CA certificates, is not
    # served from the remembered path.
    expect_code("untrusted_chain", chain_to, parsed, [self_signed(ec.generate_private_key(ec.SECP256R1()), "other")])
    expect_code("untrusted_chain", chain_to, dataclasses.replace(parsed, certificates=()), [signer.root])


def test_a_tampered_document_is_a_digest_mismatch(signer: Signer) -> None:
    parsed = parse_detached_cms(sign(signer))
    expect_code("digest_mismatch", verify_cms_signature, parsed, hashlib.sha256(DOCUMENT + b"!").digest())


def test_a_flipped_signature_byte_is_a_bad_signature(signer: Signer) -> None:
    cms_der = bytearray(sign(signer))
    cms_der[-1] ^= 0x01  # no unsigned attributes: the DER ends with the signature value
    parsed = parse_detached_cms(bytes(cms_der))
    expect_code("bad_signature", verify_cms_signature, parsed, hashlib.sha256(DOCUMENT).digest())


def test_signing_certificate_v2_pins_the_certificate_not_just_the_key(platform: Platform, signer: Signer) -> None:
    with session_scope(platform.engine) as session:  # a second certificate for the same HSM key
        other = load(service.issue_certificate(
            session, platform.pki, actor=OPERATOR, ca_name="issuing", profile_name="investor_signing",
            subject=investor_subject(name="Someone Else", reference="INV-999999"),
            public_key=signer.key.public_key(),
        ))
    digest = hashlib.sha256(DOCUMENT).digest()
    attrs = build_signed_attributes(digest, "sha256", signer.certificate, dt.datetime.now(dt.timezone.utc))
    signature = signer.key.sign(attrs, ec.ECDSA(hashes.SHA256()))
    swapped = parse_detached_cms(assemble_detached_cms(attrs, signature, other, signer.chain, "sha256", "ECDSA"))
    expect_code("bad_signature", verify_cms_signature, swapped, digest)


def test_a_signer_from_another_ca_does_not_chain(signer: Signer, tmp_path: Path) -> None:
    issuing_name = "/" + "/".join(reversed(signer.chain[0].subject.rfc4514_string().split(",")))
    rogue = rogue_ca(tmp_path, issuing_name)  # even under our issuing CA's very name
    key = serialization.load_pem_private_key(rogue.key_file.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(rogue.cert_file.read_bytes())
    assert cert.subject == signer.chain[0].subject
    parsed = parse_detached_cms(sign_detached(hashlib.sha256(DOCUMENT).digest(), "sha256", cert,
                                              signer.chain, key))  # type: ignore[arg-type]
    verify_cms_signature(parsed, hashlib.sha256(DOCUMENT).digest())  # a sound signature…
    expect_code("untrusted_chain", chain_to, parsed, [signer.root])  # …by nobody we trust


def test_an_end_entity_certificate_cannot_act_as_an_issuer(platform: Platform, signer: Signer) -> None:
    investor_key = ec.generate_private_key(ec.SECP256R1())
    investor = load(issue_investor_certificate(platform, key=investor_key, reference="INV-000777"))
    victim_key = ec.generate_private_key(ec.SECP256R1())
    forged = certificate(victim_key, investor_subject(name="Victim", reference="INV-000001"),
                         issuer=investor.subject, issuer_key=investor_key)
    cms_der = sign_detached(hashlib.sha256(DOCUMENT).digest(), "sha256", forged,
                            [investor, *signer.chain], victim_key)
    expect_code("untrusted_chain", chain_to, parse_detached_cms(cms_der), [signer.root])


def test_a_cms_stuffed_with_look_alike_cas_is_refused_quickly(signer: Signer) -> None:
    """Forty CA certificates under the issuing CA's name, all signing each other: no loop, no blow-up."""
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    issuing_name = signer.chain[0].subject
    look_alikes = [certificate(rogue_key, issuing_name, issuer=issuing_name, issuer_key=rogue_key, ca=True)
                   for _ in range(40)]
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(leaf_key, investor_subject(), issuer=issuing_name, issuer_key=rogue_key)
    cms_der = sign_detached(hashlib.sha256(DOCUMENT).digest(), "sha256", leaf, look_alikes, leaf_key)
    started = time.monotonic()
    expect_code("untrusted_chain", chain_to, parse_detached_cms(cms_der), [signer.root])
    assert time.monotonic() - started < 2


# Malformed input -----------------------------------------------------------------------------

def test_base64_and_pem_inputs_parse_like_der(signer: Signer, tmp_path: Path) -> None:
    cms_der = sign(signer)
    (tmp_path / "sig.der").write_bytes(cms_der)
    pem = openssl("cms", "-cmsout", "-inform", "DER", "-in", tmp_path / "sig.der", "-outform", "PEM")
    assert pem.stdout.startswith("-----BEGIN CMS-----"), pem.stderr
    b64 = base64.b64encode(cms_der)
    pkcs7 = b"-----BEGIN PKCS7-----\n" + base64.encodebytes(cms_der) + b"-----END PKCS7-----\n"
    expected = parse_detached_cms(cms_der)
    for form in (b64, b64.decode(), base64.urlsafe_b64encode(cms_der).rstrip(b"="), pem.stdout, pkcs7):
        assert parse_detached_cms(form) == expected


@pytest.mark.parametrize("garbage", [
    b"", "", b"   ", b"\x30", b"\x30\x80", b"not a cms", "é",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    "-----BEGIN CMS-----\n!!!\n-----END CMS-----", b"MIIB", b"\x30\x82\xff\xff" + b"\0" * 64, b"\x04\x02ab",
])
def test_garbage_is_malformed(garbage: bytes | str) -> None:
    expect_code("malformed", parse_detached_cms, garbage)


def test_structural_defects_are_malformed(signer: Signer) -> None:
    cms_der = sign(signer)

    def attach(sd: asn1_cms.SignedData) -> None:
        sd["encap_content_info"] = {"content_type": "data", "content": DOCUMENT}

    def two_signers(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"] = [sd["signer_infos"][0], sd["signer_infos"][0]]

    def no_signer(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"] = []

    def no_certificates(sd: asn1_cms.SignedData) -> None:
        sd["certificates"] = []

    def without(attribute: str) -> object:
        def change(sd: asn1_cms.SignedData) -> None:
            signer_info = sd["signer_infos"][0]
            kept = [a for a in signer_info["signed_attrs"] if a["type"].native != attribute]
            signer_info["signed_attrs"] = asn1_cms.CMSAttributes(kept)
        return change

    for change in (attach, two_signers, no_signer, no_certificates,
                   without("message_digest"), without("content_type")):
        expect_code("malformed", parse_detached_cms, rebuild(cms_der, change))
    assert parse_detached_cms(rebuild(cms_der, without("signing_time"))).signing_time is None


def test_algorithms_outside_sha2_ecdsa_rsa_are_unsupported(signer: Signer) -> None:
    def digest_sha1(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"][0]["digest_algorithm"] = {"algorithm": "sha1"}

    def signature_sha3(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"][0]["signature_algorithm"] = {"algorithm": "sha3_256_ecdsa"}

    def mixed_hashes(sd: asn1_cms.SignedData) -> None:
        sd["signer_infos"][0]["signature_algorithm"] = {"algorithm": "sha512_ecdsa"}

    for change in (digest_sha1, signature_sha3, mixed_hashes):
        expect_code("unsupported_algorithm", parse_detached_cms, rebuild(sign(signer), change))


def test_fuzzed_input_raises_only_cms_errors(signer: Signer) -> None:
    """Random bytes, every 7th truncation and random bit flips: a CmsError or a clean result."""
    cms_der = sign(signer)
    rng = random.Random(20260604)
    inputs = [rng.randbytes(rng.randrange(1, 600)) for _ in range(150)]
    inputs += [b"\x30\x82" + rng.randbytes(rng.randrange(1, 600)) for _ in range(50)]
    inputs += [cms_der[:cut] for cut in range(0, len(cms_der), 7)]
    for _ in range(400):
        flipped = bytearray(cms_der)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        inputs.append(bytes(flipped))
    digest = hashlib.sha256(DOCUMENT).digest()
    outcomes: dict[str, int] = {}
    for data in inputs:
        try:
            parsed = parse_detached_cms(data)
            verify_cms_signature(parsed, digest)
            chain_to(parsed, [signer.root])
            outcome = "valid"
        except CmsError as exc:
            outcome = exc.code
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes["malformed"] > 200 and outcomes.get("bad_signature", 0) > 0
    assert set(outcomes) <= {"valid", "malformed", "bad_signature", "digest_mismatch",
                             "unsupported_algorithm", "untrusted_chain"}


def test_a_parsed_cms_is_immutable(signer: Signer) -> None:
    parsed = parse_detached_cms(sign(signer))
    assert isinstance(parsed, ParsedCms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.signature = b""  # type: ignore[misc]


# Helpers for certificates made outside the platform's CA ------------------------------------

@dataclasses.dataclass(frozen=True)
class RogueCa:
    key_file: Path
    cert_file: Path


def rogue_ca(tmp_path: Path, subject: str) -> RogueCa:
    """A self-signed P-256 CA made by openssl on the fly."""
    key_file, cert_file = tmp_path / "rogue.key", tmp_path / "rogue.pem"
    made = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", key_file, "-out", cert_file, "-days", "2", "-subj", subject,
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,digitalSignature,nonRepudiation,keyCertSign,cRLSign")
    assert made.returncode == 0, made.stderr
    return RogueCa(key_file, cert_file)


def certificate(key: ec.EllipticCurvePrivateKey, subject: x509.Name, *, issuer: x509.Name,
                issuer_key: ec.EllipticCurvePrivateKey, ca: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def self_signed(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    name = investor_subject(name=common_name)
    return certificate(key, name, issuer=name, issuer_key=key)
