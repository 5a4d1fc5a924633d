"""The app's languages: the same error code in Traditional Chinese and English, Taipei times."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from cloudseal.platform import Platform
from mobile_api import i18n
from mobile_api.client import MobileApiError
from tests.mobile.factories import NATIONAL_IDS, PIN, new_investor, publish_meeting

ZH = {"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.mark.parametrize(("header", "language"), [
    ("zh-TW,zh;q=0.9,en;q=0.8", "zh-TW"), ("zh-Hant-TW", "zh-TW"), ("zh", "zh-TW"), ("zh-HK;q=0.5, fr", "zh-TW"),
    ("en-US,en;q=0.9,zh-TW;q=0.5", "en"), ("fr-FR", "en"), ("", "en"), (None, "en"), ("zh;q=0, en;q=0.1", "en"),
    (";;;==garbage", "en"), ("*", "en"), ("en;q=0.4, zh-TW;q=0.6", "zh-TW"),
])
def test_the_language_follows_accept_language(header: str | None, language: str) -> None:
    assert i18n.negotiate(header) == language


def test_taipei_display_strings_in_both_languages() -> None:
    moment = dt.datetime(2026, 6, 1, 15, 59, 59, tzinfo=dt.timezone.utc)
    assert i18n.taipei_display(moment, "en") == "2026-06-01 23:59:59 (Taipei)"
    assert i18n.taipei_display(moment, "zh-TW") == "2026年06月01日 23:59:59（臺北時間）"
    assert i18n.last_moment(dt.datetime(2026, 6, 1, 16, tzinfo=dt.timezone.utc), "en") == "2026-06-01 23:59:59 (Taipei)"
    with pytest.raises(ValueError):
        i18n.taipei_display(dt.datetime(2026, 6, 1), "en")


def test_the_same_error_keeps_its_code_and_changes_its_message(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0])
    answers = {name: client.get("/mobile/v1/meetings/" + "a" * 32, headers={**alice.headers(), **header})
               for name, header in (("zh", ZH), ("en", EN))}
    zh, en = (answers[n].json()["error"] for n in ("zh", "en"))
    assert answers["zh"].status_code == answers["en"].status_code == 404
    assert zh["code"] == en["code"] == "unknown_meeting"
    assert zh["message"] == "查無您持股的此場股東會。" and en["message"] == "You hold no shares in this meeting."
    assert answers["zh"].headers["content-language"] == "zh-TW" and answers["en"].headers["content-language"] == "en"
    for body, header in ((b"{nope", ZH), (b"{nope", EN)):
        malformed = client.post("/mobile/v1/auth/refresh", content=body,
                                headers={**header, "Content-Type": "application/json"})
        assert malformed.json()["error"]["code"] == "malformed_json"
    assert client.post("/mobile/v1/auth/refresh", content=b"{", headers={
        **ZH, "Content-Type": "application/json"}).json()["error"]["message"] == "請求內容不是有效的 JSON。"
    missing = client.get("/mobile/v1/me", headers=ZH).json()["error"]
    assert missing == {"code": "missing_token", "message": "請先登入。"}


def test_a_wrong_pin_and_the_deadline_read_in_chinese(client: TestClient, platform: Platform) -> None:
    alice = new_investor(client, platform, NATIONAL_IDS[0], language="zh-TW")
    public_id, _ = publish_meeting(client, platform, [("H001", NATIONAL_IDS[0], 1000, 0)])
    with pytest.raises(MobileApiError) as refused:
        alice.vote(public_id, {"1": "CFOR"}, "111119")
    assert (refused.value.code, refused.value.message) == ("wrong_pin", "PIN 碼錯誤。")
    meeting = alice.meeting(public_id)
    closes_at = dt.datetime.fromisoformat(meeting["closes_at"]["utc"].replace("Z", "+00:00"))
    assert closes_at.tzinfo is not None and closes_at.utcoffset() == dt.timedelta(0)
    assert meeting["closes_at"]["taipei"].endswith("00:00:00（臺北時間）")
    assert meeting["last_moment"].endswith("23:59:59（臺北時間）")
    alice.language = "en"
    assert alice.meeting(public_id)["last_moment"].endswith("23:59:59 (Taipei)")
    with pytest.raises(MobileApiError) as refused:
        alice.vote(public_id, {"1": "CFOR"}, "111119")
    assert (refused.value.code, refused.value.message) == ("wrong_pin", "The PIN is wrong.")
    assert alice.vote(public_id, {"1": "CFOR"}, PIN)["status"] == "counted"
