"""OCSP responses per second over HTTP on loopback, with p50/p99 latency.

Starts ``cloudseal serve`` (several worker processes, SQLite + software HSM) on a free
loopback port, issues certificates, then keeps N keep-alive connections busy POSTing
OCSP requests (SHA-1 CertIDs, no nonce: the pre-signed path clients use) for a bounded
time. Target: 5,000 responses/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

from _support import ROOT, fresh_platform, percentile, report
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ca import service
from core.auth import Actor, Role
from core.db import session_scope

TARGET = 5000


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(certificates: int, port: int, nonce: bool = False) -> tuple[list[bytes], dict[str, str]]:
    """A platform with ``certificates`` issued ones; their OCSP requests and the server env."""
    platform, workdir = fresh_platform(public_url=f"http://127.0.0.1:{port}")
    actor = Actor(subject="bench", role=Role.OPERATOR)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    requests = []
    with session_scope(platform.engine) as session:
        issuer = platform.pki.ca_certificate(platform.pki.load_ca(session, "issuing"))
    for i in range(certificates):
        with session_scope(platform.engine) as session:
            row = service.issue_certificate(
                session, platform.pki, actor=actor, ca_name="issuing", profile_name="investor_signing",
                subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench"),
                                   x509.NameAttribute(NameOID.SERIAL_NUMBER, f"INV-{i}")]),
                public_key=key,
            )
        cert = x509.load_der_x509_certificate(row.der)
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
        if nonce:  # openssl's default: each answer must be signed for this request
            builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        requests.append(builder.build().public_bytes(Encoding.DER))
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": platform.settings.database_url,
           "CLOUDSEAL_HSM": platform.settings.hsm, "CLOUDSEAL_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    platform.close()
    return requests, env


def _http_request(body: bytes) -> bytes:
    return (b"POST /pki/ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _client(port: int, payloads: list[bytes], deadline: float, latencies: list[float],
                  failures: list[int], max_requests: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        sent = 0
        while time.perf_counter() < deadline and sent < max_requests:
            started = time.perf_counter()
            writer.write(random.choice(payloads))
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            status_ok = headers.startswith(b"HTTP/1.1 200")
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status_ok or len(body) < 100:  # an OCSP error status is 5 bytes
                failures.append(1)
            sent += 1
    finally:
        writer.close()


async def load(port: int, payloads: list[bytes], connections: int, seconds: float, max_requests: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    per_connection = max(1, max_requests // connections)
    await asyncio.gather(*(_client(port, payloads, deadline, latencies, failures, per_connection)
                           for _ in range(connections)))
    return latencies, len(failures), time.perf_counter() - started


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def wrk_load(port: int, bodies: list[bytes], connections: int, seconds: float, threads: int) -> tuple[float, float, float, int, int]:
    """Drive the server with wrk (C, far lighter than a Python client): rate, p50, p99 (ms)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write("bodies = {" + ",".join(_lua_string(b) for b in bodies[:200]) + "}\n")
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/ocsp-request"\n')
    script.write("counter = 0\nrequest = function()\n  counter = counter + 1\n"
                 "  return wrk.format(nil, '/pki/ocsp', nil, bodies[(counter % #bodies) + 1])\nend\n")
    # Count answers too short to be a signed response (an OCSP error status is 5 bytes).
    script.write("local threads = {}\nfunction setup(thread) table.insert(threads, thread) end\n"
                 "function init(args) bad = 0 end\n"
                 "function response(status, headers, body) if status ~= 200 or #body < 100 then bad = bad + 1 end end\n"
                 "function done(summary, latency, requests)\n  local total = 0\n"
                 "  for _, t in ipairs(threads) do total = total + t:get('bad') end\n"
                 "  io.write(string.format('bad_ocsp_responses: %d\\n', total))\nend\n")
    script.close()
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency",
         "-s", script.name, f"http://127.0.0.1:{port}/pki/ocsp"],
        capture_output=True, text=True, timeout=seconds + 60,
    )
    os.unlink(script.name)
    out = result.stdout

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = int(re.search(r"bad_ocsp_responses: (\d+)", out).group(1))
    return rate, latency_ms("50%"), latency_ms("99%"), bad, total


def wait_for_server(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration (upper bound)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request count (upper bound)")
    parser.add_argument("--certificates", type=int, default=500)
    parser.add_argument("--nonce", action="store_true",
                        help="requests carry a nonce (each answer signed on demand, as openssl asks by default)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator: wrk if installed, else a Python asyncio client")
    args = parser.parse_args()
    port = _free_port()
    requests, env = prepare(args.certificates, port, args.nonce)
    payloads = [_http_request(r) for r in requests]
    server = subprocess.Popen(
        [sys.executable, "-m", "cloudseal", "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    try:
        wait_for_server(port, server)
        asyncio.run(load(port, payloads, args.connections, 1.0, 2000))  # warm-up
        if use_wrk:
            rate, p50, p99, failures, total = wrk_load(port, requests, args.connections, args.seconds, threads=1)
            client = "wrk"
        else:
            latencies, failures, elapsed = asyncio.run(
                load(port, payloads, args.connections, args.seconds, args.max_requests))
            rate, total = len(latencies) / elapsed, len(latencies)
            p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
            client = "python client"
    finally:
        server.terminate()
        server.wait(timeout=30)
    report("bench/ocsp.py OCSP responses", rate, TARGET, "responses/s",
           f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {total} responses, {failures} not signed answers, {args.workers} workers, "
           f"{args.connections} connections, {client}{', with nonces' if args.nonce else ''}")


if __name__ == "__main__":
    main()
