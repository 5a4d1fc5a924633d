"""openssl checks our certificates, CRLs and OCSP answers (over a real HTTP server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cloudseal.platform import Platform
from tests.factories import issue_investor_certificate, load, revoke
from tests.interop.conftest import PkiFiles, crl_der, require_tool
from tests.support.servers import LiveServer


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_openssl_verify_accepts_an_issued_certificate(platform: Platform, pki_files: PkiFiles) -> None:
    leaf = pki_files.write("leaf.pem", load(issue_investor_certificate(platform)).public_bytes(Encoding.PEM))
    result = openssl("verify", "-x509_strict", "-CAfile", pki_files.root, "-untrusted", pki_files.issuing, leaf)
    assert result.returncode == 0, result.stderr
    assert f"{leaf}: OK" in result.stdout


def test_openssl_crl_verify_accepts_both_crls(platform: Platform, pki_files: PkiFiles) -> None:
    revoke(platform, issue_investor_certificate(platform).serial_hex, "keyCompromise")
    for name, ca_file in (("root", pki_files.root), ("issuing", pki_files.issuing)):
        crl_file = pki_files.write(f"{name}.crl", crl_der(platform, name))
        result = openssl("crl", "-inform", "DER", "-in", crl_file, "-CAfile", ca_file, "-noout", "-verify")
        assert result.returncode == 0, result.stderr
        assert "verify OK" in result.stderr + result.stdout


def test_openssl_verify_with_crl_check_sees_a_revocation(platform: Platform, pki_files: PkiFiles) -> None:
    row = issue_investor_certificate(platform)
    leaf = pki_files.write("leaf.pem", load(row).public_bytes(Encoding.PEM))
    revoke(platform, row.serial_hex, "keyCompromise")
    crl_pem = x509.load_der_x509_crl(crl_der(platform, "issuing")).public_bytes(Encoding.PEM)
    crl_file = pki_files.write("issuing.crl.pem", crl_pem)
    result = openssl("verify", "-crl_check", "-CRLfile", crl_file, "-CAfile", pki_files.root,
                     "-untrusted", pki_files.issuing, leaf)
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr


def _ocsp(server: LiveServer, files: PkiFiles, *extra: str | Path) -> str:
    result = openssl("ocsp", "-url", f"{server.url}/pki/ocsp", "-issuer", files.issuing,
                     "-CAfile", files.chain, "-resp_text", *extra)
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr + result.stdout, result.stderr
    return result.stdout


def test_openssl_ocsp_reports_good_then_revoked_with_reason(platform: Platform, pki_files: PkiFiles,
                                                          live_server: LiveServer) -> None:
    row = issue_investor_certificate(platform)
    leaf = pki_files.write("leaf.pem", load(row).public_bytes(Encoding.PEM))
    assert f"{leaf}: good" in _ocsp(live_server, pki_files, "-cert", leaf)
    revoke(platform, row.serial_hex, "keyCompromise")
    out = _ocsp(live_server, pki_files, "-cert", leaf)
    assert f"{leaf}: revoked" in out
    assert "Reason: keyCompromise" in out


def test_openssl_ocsp_with_sha256_cert_id_and_no_nonce(platform: Platform, pki_files: PkiFiles,
                                                        live_server: LiveServer) -> None:
    leaf = pki_files.write("leaf.pem", load(issue_investor_certificate(platform)).public_bytes(Encoding.PEM))
    out = _ocsp(live_server, pki_files, "-no_nonce", "-sha256", "-cert", leaf)
    assert f"{leaf}: good" in out
    assert "Hash Algorithm: sha256" in out


def test_openssl_ocsp_reports_unknown_for_a_serial_never_issued(pki_files: PkiFiles, live_server: LiveServer) -> None:
    out = _ocsp(live_server, pki_files, "-serial", "0x5EED1234567890ABCDEF")
    assert ": unknown" in out


def test_openssl_ocsp_reports_hold_as_revoked_certificate_hold(platform: Platform, pki_files: PkiFiles,
                                                               live_server: LiveServer) -> None:
    row = issue_investor_certificate(platform)
    leaf = pki_files.write("leaf.pem", load(row).public_bytes(Encoding.PEM))
    revoke(platform, row.serial_hex, "certificateHold")
    out = _ocsp(live_server, pki_files, "-cert", leaf)
    assert "Reason: certificateHold" in out
