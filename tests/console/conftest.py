"""Fixtures of the console tests."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core import accounts
from tests.console.world import CHEAP_HASHER, World, build_world


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with parameters cheap enough for many sign-ins per test."""
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", CHEAP_HASHER)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    """The whole platform's app (the console is one of its routers)."""
    return create_app(platform=platform, background_refresh=False)


@pytest.fixture
def world(platform: Platform) -> World:
    """Staff, brokers and two issuers' meetings; the meeting is under way (e-voting closed)."""
    return build_world(platform, held_yesterday=True)
