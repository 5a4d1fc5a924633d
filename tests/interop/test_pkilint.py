"""pkilint finds no ERROR or FATAL in our certificates, CRLs and OCSP responses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from cloudseal.platform import Platform
from tests.factories import issue_investor_certificate, load, revoke
from tests.interop.conftest import PkiFiles, crl_der, require_tool, service_certificate


def lint(tool: str, path: Path, *options: str) -> str:
    """Run a pkilint command at ERROR threshold; its output lists what it found."""
    result = subprocess.run([require_tool(tool), "lint", *options, "-s", "ERROR", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1, 2), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("profile", ["root_ca", "issuing_ca", "ocsp_signer", "platform_seal", "investor_signing"])
def test_certificates_pass_pkilint(platform: Platform, pki_files: PkiFiles, profile: str) -> None:
    cert = load(issue_investor_certificate(platform)) if profile == "investor_signing" else service_certificate(platform, profile)
    findings = lint("lint_pkix_cert", pki_files.write(f"{profile}.der", cert.public_bytes(Encoding.DER)))
    assert findings == "", findings


def test_rsa_investor_certificates_pass_pkilint(platform: Platform, pki_files: PkiFiles) -> None:
    cert = load(issue_investor_certificate(platform, key=rsa.generate_private_key(65537, 2048)))
    findings = lint("lint_pkix_cert", pki_files.write("investor_rsa.der", cert.public_bytes(Encoding.DER)))
    assert findings == "", findings


@pytest.mark.parametrize(("ca_name", "crl_type"), [("root", "ARL"), ("issuing", "CRL")])
def test_crls_pass_pkilint(platform: Platform, pki_files: PkiFiles, ca_name: str, crl_type: str) -> None:
    revoke(platform, issue_investor_certificate(platform).serial_hex, "keyCompromise")
    held = issue_investor_certificate(platform, reference="INV-HOLD")
    revoke(platform, held.serial_hex, "certificateHold")
    path = pki_files.write(f"{ca_name}.crl", crl_der(platform, ca_name))
    findings = lint("lint_crl", path, "-t", crl_type, "-p", "PKIX")
    assert findings == "", findings


@pytest.mark.parametrize("state", ["good", "revoked"])
def test_ocsp_responses_pass_pkilint(platform: Platform, pki_files: PkiFiles, state: str) -> None:
    row = issue_investor_certificate(platform)
    if state == "revoked":
        revoke(platform, row.serial_hex, "keyCompromise")
    issuer = x509.load_pem_x509_certificate(pki_files.issuing.read_bytes())
    request = x509.ocsp.OCSPRequestBuilder().add_certificate(load(row), issuer, hashes.SHA256()).build()
    answer = platform.ocsp.respond(request.public_bytes(Encoding.DER)).der
    assert x509.ocsp.load_der_ocsp_response(answer).certificate_status.name.lower() == state
    findings = lint("lint_ocsp_response", pki_files.write(f"{state}.ocsp", answer))
    assert findings == "", findings
