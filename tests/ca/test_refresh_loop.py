"""The server keeps CRLs fresh by itself."""

from __future__ import annotations

import datetime as dt
import time

from cryptography import x509
from fastapi.testclient import TestClient

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import utcnow


def crl_number(client: TestClient) -> int:
    crl = x509.load_der_x509_crl(client.get("/pki/crl/issuing.crl").content)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_background_refresh_reissues_ageing_crls(platform: Platform) -> None:
    platform.settings.refresh_interval_seconds = 0.05
    app = create_app(platform=platform, background_refresh=True)
    with TestClient(app) as client:
        first = crl_number(client)
        time.sleep(0.3)
        assert crl_number(client) == first  # still fresh: nothing re-issued
        later = utcnow() + dt.timedelta(hours=13)
        platform.pki.clock = lambda: later
        deadline = time.monotonic() + 10
        while crl_number(client) == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert crl_number(client) > first
