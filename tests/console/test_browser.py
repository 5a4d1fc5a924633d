"""The console in a real browser: Debian's headless Chromium driven by Playwright, against
the app served by uvicorn on a loopback port. Screenshots of the main pages are saved under
var/test-artifacts/console/."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser tests skip
    expect = sync_playwright = None

from cloudseal.app import create_app
from cloudseal.platform import Platform
from core.db import session_scope
from ra.models import Enrolment
from tests.console.world import PASSWORD, World
from tests.ra.factories import NATIONAL_IDS
from tests.support.servers import LiveServer
from tests.voting.test_ballots import signed, submit, voter
from voting.models import Meeting, MeetingReport

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's package; the tests skip when it or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium not installed (apt-get install chromium): browser tests skipped")
    if sync_playwright is None:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[test]'): browser tests skipped")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def served(platform: Platform, world: World) -> Iterator[tuple[str, World]]:
    """The platform's app on a real port, with the console's world (meeting held: e-voting closed)."""
    with LiveServer(create_app(platform=platform, background_refresh=False)) as server:
        yield server.url, world


def new_page(browser: Any, base_url: str, *, locale: str = "en-US", viewport: dict[str, int] = LAPTOP) -> Any:
    context = browser.new_context(base_url=base_url, locale=locale, viewport=viewport, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def sign_in(page: Any, username: str, target: str = "/console") -> None:
    page.goto(f"/console/sign-in?next={target}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("form[action='/console/sign-in'] button[type=submit]").click()
    page.wait_for_url(f"**{target}*")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def closes_at(platform: Platform, meeting_id: int) -> dt.datetime:
    with session_scope(platform.engine) as session:
        meeting = session.get(Meeting, meeting_id)
        assert meeting is not None
        return meeting.closes_at


def test_host_sees_turnout_change_live_then_freezes_and_downloads_the_sealed_report(
        browser: Any, served: tuple[str, World], platform: Platform, tmp_path: Path) -> None:
    base_url, world = served
    alice = voter(platform, "H001", NATIONAL_IDS[0])
    page = new_page(browser, base_url)
    sign_in(page, "hana", f"/console/meetings/{world.meeting_id}")
    page.wait_for_selector("#live-state:has-text('Updated')")
    assert page.locator("#holders-voted").inner_text() == "0"

    during = closes_at(platform, world.meeting_id) - dt.timedelta(hours=1)
    submit(platform, *signed(platform, alice, world.public_id), received_at=during)
    expect(page.locator("#holders-voted")).to_have_text("1", timeout=WAIT_MS)
    assert page.locator("#shares-voted").inner_text() == "1,234,567"
    assert page.locator("#shares-pct").inner_text() == "61.7%"  # of 2,000,000 outstanding
    assert page.locator("#item-3 .badge-elected").count() == 2
    shot(page, "host-meeting-live.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#att-holder").fill("H002")
    page.locator("#c-1").select_option("CAGS")
    page.locator("#attendance-form button[type=submit]").click()
    page.wait_for_selector(".flash:has-text('in-room votes recorded')")
    expect(page.locator("[data-mode-holders=in_person]")).to_have_text("1")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#freeze-button").click()
    page.wait_for_selector(".flash:has-text('frozen')")
    assert page.locator("#meeting-status .badge").inner_text() == "frozen"
    shot(page, "host-meeting-frozen.png")
    with page.expect_download() as download:
        page.locator("#report-link").click()
    pdf = Path(download.value.path()).read_bytes()
    with session_scope(platform.engine) as session:
        sealed = session.get(MeetingReport, world.meeting_id)
        assert sealed is not None
    assert pdf.startswith(b"%PDF") and b"/ByteRange" in pdf
    assert hashlib.sha256(pdf).hexdigest() == sealed.pdf_sha256


def test_an_ra_officer_approves_an_enrolment_submitted_by_another_officer(
        browser: Any, served: tuple[str, World], platform: Platform) -> None:
    base_url, _ = served
    page = new_page(browser, base_url)
    sign_in(page, "olivia", "/console/ra/enrolments")
    page.locator("a[href='/console/ra/enrolments/new']").click()
    page.locator("#id_number").fill(NATIONAL_IDS[4])
    page.locator("#name").fill("林美玲")
    page.locator("#contact_channel").fill("sms:+886912000111")
    page.locator("#accounts").fill("9800-123456")
    page.locator("#proofing").fill("ID card and second document checked in branch")
    page.locator("#enrol-form button[type=submit]").click()
    page.wait_for_selector(".flash:has-text('submitted')")
    assert page.locator("#enrolments td:has-text('Dual control: a second officer approves')").count() == 1
    page.locator("form[action='/console/sign-out'] button").click()
    page.wait_for_url("**/console/sign-in*")

    sign_in(page, "oscar", "/console/ra/enrolments")
    shot(page, "ra-enrolment-queue.png")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button[id^=approve-]").first.click()
    page.wait_for_selector(".flash:has-text('activation code was sent')")
    with session_scope(platform.engine) as session:
        enrolment = session.execute(select(Enrolment).where(Enrolment.broker_code == "B101")).scalar_one()
    assert (enrolment.status, enrolment.submitted_by, enrolment.approved_by) == (
        "approved", "ra_officer:olivia", "ra_officer:oscar")
    page.goto("/console/ra/investors?q=" + NATIONAL_IDS[4][:3] + "****" + NATIONAL_IDS[4][-3:])
    assert page.locator("#investors tbody tr").count() == 1
    shot(page, "ra-investor-search.png")


def test_a_host_of_another_issuer_sees_nothing_of_this_meeting(browser: Any, served: tuple[str, World]) -> None:
    base_url, world = served
    page = new_page(browser, base_url)
    sign_in(page, "otto", "/console/meetings")
    assert "2026 年股東常會" not in page.content()
    assert page.locator("table a").all_inner_texts() == ["Hon Hai 2026 AGM"]
    for path in (f"/console/meetings/{world.meeting_id}", f"/console/meetings/{world.meeting_id}/live.json",
                 f"/console/meetings/{world.meeting_id}/exports/tally.csv",
                 f"/console/meetings/{world.meeting_id}/report.pdf"):
        response = page.goto(path)
        assert response is not None and response.status == 404, path
        assert "2026 年股東常會" not in page.content() and "H001" not in page.content()
    page.goto(f"/console/meetings/{world.meeting_id}")
    shot(page, "other-host-404.png")


def test_an_operator_sees_the_ca_status_and_the_audit_log_verification(
        browser: Any, served: tuple[str, World]) -> None:
    base_url, _ = served
    page = new_page(browser, base_url)
    sign_in(page, "root", "/console/ops/ca")
    assert page.locator("#ocsp-signer .value").inner_text().startswith("20")
    assert page.locator("#authorities tbody tr").count() == 2
    assert "overdue" not in page.locator("#authorities").inner_text()
    shot(page, "operator-ca-status.png")
    page.goto("/console/ops/audit")
    page.locator("#verify-button").click()
    page.wait_for_selector("#audit-verdict")
    assert page.locator("#audit-verdict").inner_text().startswith("Verified: all")
    shot(page, "operator-audit-log.png")
    page.goto("/console/ops/brokers")
    assert page.locator("#brokers tbody tr").count() >= 2
    shot(page, "operator-brokers.png")


def test_the_console_speaks_traditional_chinese_on_a_tablet(browser: Any, served: tuple[str, World]) -> None:
    base_url, world = served
    page = new_page(browser, base_url, locale="zh-TW", viewport=TABLET)
    page.set_extra_http_headers({"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"})
    sign_in(page, "hana", f"/console/meetings/{world.meeting_id}")
    page.wait_for_selector("#live-state:has-text('更新時間')")
    assert page.locator("#turnout-title").inner_text() == "出席與投票概況"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "host-meeting-zh-tablet.png")
    page.locator("a[href^='/console/lang/en']").click()
    page.wait_for_selector("#turnout-title:has-text('Turnout')")
