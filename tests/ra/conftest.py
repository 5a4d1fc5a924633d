"""Fixtures of the RA tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from tests.ra.factories import create_broker


@pytest.fixture
def brokers(client: TestClient, platform: Platform) -> None:
    """Three brokers: B001 and B002 with single approval, B003 under dual control."""
    create_broker(client, platform, "B001")
    create_broker(client, platform, "B002")
    create_broker(client, platform, "B003", dual_control=True)
