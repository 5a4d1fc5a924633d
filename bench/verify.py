"""In-process CMS verification with warm caches, against the raw ECDSA P-256 verify rate.

Signs orders with investors' HSM keys (through POST /signing/cms on ``cloudseal serve``),
then verifies them with ``signing.verifier.Verifier`` using OCSP over HTTP with caching;
after the first pass every status comes from the cache. Target: at least 50% of the raw
P-256 verify rate measured in the same run. Then wrk (if installed) drives
``POST /signing/verify`` on ``cloudseal serve`` (2 workers, SQLite): target 2,000/s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import httpx
from _support import ROOT, fresh_platform, report
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from ocsp import _free_port, wait_for_server
from sign import enrol_investors

from core.auth import Actor, Role
from ra import devices
from signing import service
from signing.revocation import OcspRevocation
from signing.verifier import Verifier

PIN = "482916"


def raw_verify_rate(seconds: float = 2.0) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    data = os.urandom(64)
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        count += 1
    return count / (time.perf_counter() - started)


def signed_orders(http: httpx.Client, investors: list, count: int) -> list[tuple[bytes, bytes]]:
    orders = []
    for n in range(count):
        _, credential_id, device = investors[n % len(investors)]
        order = f'{{"order": {n}, "symbol": "2330", "quantity": 1000}}'.encode()
        digest = hashlib.sha256(order).digest()
        challenge = http.post("/ra/app/challenges", json={"credential_id": credential_id}).json()
        message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                            service.authorization_action("sha256", [digest]), credential_id)
        proof = base64.b64encode(device.sign(message, ec.ECDSA(hashes.SHA256()))).decode()
        response = http.post("/signing/cms", json={
            "credential_id": credential_id, "pin": PIN, "digest": base64.b64encode(digest).decode(),
            "challenge_id": challenge["challenge_id"], "device_signature": proof})
        orders.append((order, base64.b64decode(response.json()["cms"])))
    return orders


def wrk_verify(port: int, token: str, orders: list[tuple[bytes, bytes]], seconds: float,
               connections: int) -> tuple[float, float, float, int]:
    """POST /signing/verify from wrk, rotating over the orders: rate, p50, p99 (ms), failures."""
    bodies = [json.dumps({"cms": base64.b64encode(cms).decode(),
                          "content_base64": base64.b64encode(order).decode()}) for order, cms in orders]
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write("bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n")
    script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                 f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    script.write("counter = 0\nrequest = function()\n  counter = counter + 1\n"
                 "  return wrk.format(nil, '/signing/verify', nil, bodies[(counter % #bodies) + 1])\nend\n"
                 "local threads = {}\nfunction setup(thread) table.insert(threads, thread) end\n"
                 "function init(args) bad = 0 end\n"
                 "function response(status, headers, body)\n"
                 "  if status ~= 200 or not string.find(body, '\"valid\":true', 1, true) then bad = bad + 1 end\nend\n"
                 "function done(summary, latency, requests)\n  local total = 0\n"
                 "  for _, t in ipairs(threads) do total = total + t:get('bad') end\n"
                 "  io.write(string.format('bad_verifications: %d\\n', total))\nend\n")
    script.close()
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency",
                          "-s", script.name, f"http://127.0.0.1:{port}/signing/verify"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(script.name)

    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = int(re.search(r"bad_verifications: (\d+)", out).group(1))
    return rate, latency_ms("50%"), latency_ms("99%"), bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10, help="HTTP load duration (0: skip the HTTP figure)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    port = _free_port()
    platform, _ = fresh_platform(public_url=f"http://127.0.0.1:{port}")
    investors = enrol_investors(platform, 8)
    token = platform.mint_token(Actor("bench", Role.BROKER_BACKOFFICE, "B000"))
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": platform.settings.database_url,
           "CLOUDSEAL_HSM": platform.settings.hsm, "CLOUDSEAL_PUBLIC_URL": platform.settings.public_url}
    platform.close()
    server = subprocess.Popen([sys.executable, "-m", "cloudseal", "serve", "--port", str(port),
                               "--workers", str(args.workers)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(port, server)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            orders = signed_orders(http, investors, args.orders)
            verifier = Verifier.from_chain_pem(http.get("/pki/chain.pem").content, OcspRevocation(http, base))
            for order, cms in orders:  # warm the OCSP cache
                assert verifier.verify(cms, content=order).valid
            started = time.perf_counter()
            for _ in range(args.rounds):
                for order, cms in orders:
                    verifier.verify(cms, content=order)
            rate = args.rounds * len(orders) / (time.perf_counter() - started)
        raw = raw_verify_rate()
        report("bench/verify.py in-process verifications", rate, raw * 0.5, "verifications/s",
               f"(raw ECDSA P-256 verify {raw:,.0f}/s in this run, ratio {rate / raw:.1%}; target = 50% of raw)")
        if args.seconds and shutil.which("wrk"):
            http_rate, p50, p99, bad = wrk_verify(port, token, orders, args.seconds, args.connections)
            report("bench/verify.py /signing/verify over HTTP", http_rate, 2000, "verifications/s",
                   f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {bad} not valid or failed; wrk, {args.connections} "
                   f"connections, {args.workers} workers, SQLite + software HSM")
        elif args.seconds:
            print("bench/verify.py /signing/verify over HTTP: skipped (install wrk: apt-get install wrk)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
