"""Signatures per second over HTTP: challenge → CSC credentials/authorize → signatures/signHash.

Enrols many investors, starts ``cloudseal serve`` (2 workers, SQLite + software HSM), logs
each investor in through CSC auth/login, then client threads make signatures for a bounded
time, each with a fresh device proof and PIN, exactly as a CSC client with the app would.
Also prints the raw HSM signing rate (P-256) measured in the same run, and the ratio.
Target: 1,000 signatures/s on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from _support import ROOT, fresh_platform, percentile, report
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from enrol import OPERATOR, enrol_one, national_ids
from ocsp import _free_port, wait_for_server

from core.auth import Actor, Role
from core.db import session_scope
from hsm_sim.base import DigestAlgorithm, KeyAlgorithm, Mechanism
from ra import devices, service

TARGET = 1000
PIN = "482916"
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def enrol_investors(platform, count: int) -> list[tuple[str, str, ec.EllipticCurvePrivateKey]]:
    """(reference, credential_id, device key) for ``count`` freshly enrolled investors."""
    officer = Actor("bench-officer", Role.RA_OFFICER, "B000")
    with session_scope(platform.engine) as session:
        service.create_broker(session, actor=OPERATOR, code="B000", name="Bench")
    enrolled = []
    for id_number in national_ids(count, seed=11):
        device = ec.generate_private_key(ec.SECP256R1())
        reference, credential_id = enrol_one(platform, officer, id_number, device)
        enrolled.append((reference, credential_id, device))
    return enrolled


def raw_hsm_rate(platform, seconds: float = 2.0) -> float:
    platform.keystore.generate_key_pair("bench/raw", "bench", KeyAlgorithm.EC_P256)
    digest = os.urandom(32)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        platform.keystore.sign("bench/raw", "bench", digest, DigestAlgorithm.SHA256, Mechanism.ECDSA)
        count += 1
    return count / (time.perf_counter() - started)


def sign_loop(base: str, investor: tuple[str, str, ec.EllipticCurvePrivateKey], deadline: float,
              latencies: list[float], failures: list[str], lock: threading.Lock, hashes_per_sad: int = 1) -> None:
    reference, credential_id, device = investor
    with httpx.Client(base_url=base, timeout=30) as http:
        basic = base64.b64encode(f"{reference}:{PIN}".encode()).decode()
        token = http.post("/csc/v1/auth/login", json={}, headers={"Authorization": f"Basic {basic}"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            digests = [os.urandom(32) for _ in range(hashes_per_sad)]
            challenge = http.post("/ra/app/challenges", json={"credential_id": credential_id}).json()
            action = "authorize:" + hashlib.sha256(b"sha256" + b"".join(digests)).hexdigest()
            message = devices.challenge_message(challenge["challenge_id"], base64.b64decode(challenge["nonce"]),
                                                action, credential_id)
            proof = base64.b64encode(device.sign(message, ec.ECDSA(hashes.SHA256()))).decode()
            hash_b64 = [base64.b64encode(digest).decode() for digest in digests]
            sad = http.post("/csc/v1/credentials/authorize", headers=headers, json={
                "credentialID": credential_id, "numSignatures": len(digests), "hash": hash_b64, "hashAlgo": SHA256,
                "PIN": PIN, "clientData": json.dumps({"challenge_id": challenge["challenge_id"],
                                                     "device_signature": proof})})
            signed = http.post("/csc/v1/signatures/signHash", headers=headers, json={
                "credentialID": credential_id, "SAD": sad.json().get("SAD", ""), "hash": hash_b64,
                "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256})
            with lock:
                if signed.status_code == 200:
                    latencies.extend([time.perf_counter() - started] * len(digests))
                else:
                    failures.append(signed.text[:100])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--investors", type=int, default=32)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hashes-per-sad", type=int, default=1,
                        help="hashes one authorisation covers (CSC numSignatures; 1 = one PIN entry per signature)")
    args = parser.parse_args()
    port = _free_port()
    platform, _ = fresh_platform(public_url=f"http://127.0.0.1:{port}")
    investors = enrol_investors(platform, args.investors)
    raw = raw_hsm_rate(platform)
    env = {**os.environ, "CLOUDSEAL_DATABASE_URL": platform.settings.database_url, "CLOUDSEAL_HSM": platform.settings.hsm}
    platform.close()
    server = subprocess.Popen([sys.executable, "-m", "cloudseal", "serve", "--port", str(port),
                               "--workers", str(args.workers)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    try:
        wait_for_server(port, server)
        started = time.perf_counter()
        deadline = started + args.seconds
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            for n in range(args.threads):
                pool.submit(sign_loop, f"http://127.0.0.1:{port}", investors[n % len(investors)], deadline,
                            latencies, failures, lock, args.hashes_per_sad)
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = len(latencies) / elapsed
    report(f"bench/sign.py signatures over HTTP ({args.hashes_per_sad} hash(es) per SAD)", rate, TARGET,
           "signatures/s", f"p50 {percentile(latencies, .5) * 1000:.1f} ms, p99 {percentile(latencies, .99) * 1000:.1f} ms, "
           f"{len(failures)} failures; raw HSM P-256 sign rate {raw:,.0f}/s, ratio {rate / raw:.1%}")
    if failures:
        print("first failure:", failures[0])


if __name__ == "__main__":
    main()
