"""The real server with several worker processes: a status change is seen by every worker;
connections are spread over the workers; a worker that dies is replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from tests.support.servers import free_port


@dataclass(frozen=True)
class Served:
    base: str
    headers: dict[str, str]
    server: subprocess.Popen[bytes]


@pytest.fixture
def served(serving: Served) -> tuple[str, dict[str, str]]:
    return serving.base, serving.headers


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Served]:
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
        yield Served(base, {"Authorization": f"Bearer {token}"}, server)
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


def _workers(server: subprocess.Popen[bytes]) -> list[int]:
    """The worker processes (multiprocessing's resource tracker is a child too)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return sorted(int(pid) for pid in children
                  if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes())


def _connections(pid: int, port: int) -> int:
    """How many established TCP connections to ``port`` the process holds."""
    inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(fd).startswith("socket:[")}
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            established.add(fields[9])
    return len(inodes & established)


def _spread(port: int, count: int, timeout: float) -> list[socket.socket]:
    """``count`` keep-alive connections opened at once, each answered once."""
    connections = [socket.create_connection(("127.0.0.1", port), timeout=timeout) for _ in range(count)]
    for connection in connections:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    for connection in connections:  # every one answered, so every one was accepted
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
    return connections


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/net/tcp").exists(),
                    reason="needs SO_REUSEPORT and /proc")
def test_connections_opened_at_once_are_spread_over_the_workers(serving: Served) -> None:
    """Each worker has its own SO_REUSEPORT socket: a burst of 64 connections is not taken by
    whichever worker wakes first (a binomial split below 16 of 64 has odds of 1e-5)."""
    port = int(serving.base.rsplit(":", 1)[1])
    workers = _workers(serving.server)
    assert len(workers) == 2
    connections = _spread(port, 64, 10)
    try:
        held = {pid: _connections(pid, port) for pid in workers}
        assert sum(held.values()) == 64
        assert min(held.values()) >= 16, held
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(serving: Served) -> None:
    """The replacement serves the dead worker's socket, which kept its share of the
    connections made meanwhile: they wait for it rather than all going to the other worker."""
    port = int(serving.base.rsplit(":", 1)[1])
    first, second = _workers(serving.server)
    os.kill(first, signal.SIGKILL)
    while Path(f"/proc/{first}/status").exists() and "zombie" not in Path(f"/proc/{first}/status").read_text():
        time.sleep(0.01)
    connections = _spread(port, 64, 60)  # made while no worker serves the first socket
    held = {pid: _connections(pid, port) for pid in _workers(serving.server)}
    assert first not in held and second in held and sum(held.values()) == 64
    assert min(held.values()) >= 16, held
    for connection in connections:
        connection.close()
    deadline = time.monotonic() + 60
    while True:
        workers = _workers(serving.server)
        if len(workers) == 2 and first not in workers:
            break
        assert time.monotonic() < deadline, f"no new worker: {workers}"
        time.sleep(0.2)
    assert second in workers
    deadline = time.monotonic() + 60
    while True:  # the new worker serves once its application has started
        try:
            if all(httpx.get(serving.base + "/healthz", timeout=2).status_code == 200 for _ in range(10)):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
    serving.server.send_signal(signal.SIGTERM)
    assert serving.server.wait(timeout=45) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_several_workers_refuse_a_port_something_already_listens_on(tmp_path: Path) -> None:
    """SO_REUSEPORT must not let a second server quietly share a port (and its traffic)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even a listener that allows sharing
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "CLOUDSEAL_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
               "CLOUDSEAL_HSM": f"soft:{tmp_path}/hsm"}
        served = subprocess.run([sys.executable, "-m", "cloudseal", "serve", "--port", str(port), "--workers", "2"],
                                env=env, capture_output=True, text=True, timeout=60)
    assert served.returncode != 0
    assert "Address already in use" in served.stderr
