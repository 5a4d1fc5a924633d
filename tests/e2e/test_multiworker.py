"""The real server with several worker processes: a status change is seen by every worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from tests.support.servers import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``cloudseal serve --workers 2`` on a fresh database, as ``make run`` sets it up."""
    port = free_port()
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
           "CLOUDSEAL_HSM": f"soft:{tmp_path}/hsm", "CLOUDSEAL_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    cli = [sys.executable, "-m", "cloudseal"]
    for step in (["migrate"], ["init"]):
        subprocess.run(cli + step, env=env, check=True, capture_output=True, timeout=120)
    token = subprocess.run(cli + ["token", "issue", "--subject", "ops"], env=env, check=True,
                           capture_output=True, text=True, timeout=60).stdout.strip()
    server = subprocess.Popen(cli + ["serve", "--port", str(port), "--workers", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield base, {"Authorization": f"Bearer {token}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _statuses(base: str, request_der: bytes, times: int) -> set[str]:
    seen = set()
    # A new connection each time, so the kernel spreads requests over both workers.
    for _ in range(times):
        answer = httpx.post(base + "/pki/ocsp", content=request_der,
                            headers={"Content-Type": "application/ocsp-request"}, timeout=10)
        seen.add(ocsp.load_der_ocsp_response(answer.content).certificate_status.name)
    return seen


def test_revocation_is_served_by_every_worker_at_once(served: tuple[str, dict[str, str]]) -> None:
    base, headers = served
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"public_key_pem": key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "subject": {"common_name": "Wang Xiao-Ming", "serial_number": "INV-MW-1"}}
    issued = httpx.post(base + "/ca/issuing/certificates", json=body, headers=headers, timeout=30)
    assert issued.status_code == 201, issued.text
    cert = x509.load_pem_x509_certificate(issued.json()["certificate_pem"].encode())
    issuer = x509.load_der_x509_certificate(httpx.get(base + "/pki/issuing.crt").content)
    request_der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    assert _statuses(base, request_der, 20) == {"GOOD"}
    revoked = httpx.post(f"{base}/ca/certificates/{issued.json()['serial']}/revoke",
                         json={"reason": "keyCompromise"}, headers=headers, timeout=30)
    assert revoked.status_code == 200, revoked.text
    assert _statuses(base, request_der, 20) == {"REVOKED"}
    crl = x509.load_der_x509_crl(httpx.get(base + "/pki/crl/issuing.crl").content)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
