"""In-process CMS verification with warm caches, against the raw ECDSA P-256 verify rate.

Signs orders with investors' HSM keys (through POST /signing/cms on an in-process server),
then verifies them with ``signing.verifier.Verifier`` using OCSP over HTTP with caching;
after the first pass every status comes from the cache. Target: at least 50% of the raw
P-256 verify rate measured in the same run. (The HTTP figure for /signing/verify is the
issue's second target; ``--http`` measures it with sequential keep-alive requests.)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import time

import httpx
from _support import fresh_platform, report
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sign import enrol_investors

from cloudseal.app import create_app
from core.auth import Actor, Role
from ra import devices
from signing import service
from signing.revocation import OcspRevocation
from signing.verifier import Verifier
from tests.support.servers import LiveServer

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--http", type=int, default=300, help="verifications over HTTP (0: skip)")
    args = parser.parse_args()
    platform, _ = fresh_platform()
    investors = enrol_investors(platform, 8)
    with LiveServer(create_app(platform=platform, background_refresh=False)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        orders = signed_orders(http, investors, args.orders)
        verifier = Verifier.from_chain_pem(http.get("/pki/chain.pem").content, OcspRevocation(http, server.url))
        for order, cms in orders:  # warm the OCSP cache
            assert verifier.verify(cms, content=order).valid
        started = time.perf_counter()
        for _ in range(args.rounds):
            for order, cms in orders:
                verifier.verify(cms, content=order)
        rate = args.rounds * len(orders) / (time.perf_counter() - started)
        raw = raw_verify_rate()
        target = raw * 0.5
        report("bench/verify.py in-process verifications", rate, target, "verifications/s",
               f"(raw ECDSA P-256 verify {raw:,.0f}/s in this run, ratio {rate / raw:.1%}; target = 50% of raw)")
        if args.http:
            token = platform.mint_token(Actor("bench", Role.BROKER_BACKOFFICE, "B000"))
            headers = {"Authorization": f"Bearer {token}"}
            started = time.perf_counter()
            for n in range(args.http):
                order, cms = orders[n % len(orders)]
                http.post("/signing/verify", headers=headers, json={
                    "cms": base64.b64encode(cms).decode(), "content_base64": base64.b64encode(order).decode()})
            http_rate = args.http / (time.perf_counter() - started)
            report("bench/verify.py /signing/verify over HTTP", http_rate, 2000, "verifications/s",
                   "(one client, sequential keep-alive requests, one in-process uvicorn worker)")
    platform.close()


if __name__ == "__main__":
    main()
