"""Languages of the mobile API: Traditional Chinese (zh-TW) and English, by Accept-Language.

Error codes never change with the language; only the ``message`` people read does. A code
without a translation keeps the service's English message (``en``) or gets a generic
sentence for its HTTP status (``zh-TW``). Times are shown in Asia/Taipei.
"""

from __future__ import annotations

import datetime as dt
import re

from voting.calendar import TAIPEI

EN, ZH_TW = "en", "zh-TW"
DEFAULT = EN

_TAG = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def negotiate(accept_language: str | None) -> str:
    """The supported language the ``Accept-Language`` header prefers (RFC 9110 §12.5.4).

    Any Chinese tag (zh, zh-TW, zh-Hant, zh-HK …) gets Traditional Chinese, the only Chinese
    offered; anything else, a malformed header or none, English.
    """
    if not accept_language:
        return DEFAULT
    best, best_q = DEFAULT, 0.0
    for part in accept_language.split(",")[:20]:
        match = _TAG.match(part)
        if match is None:
            continue
        tag, q = match.group(1).lower(), float(match.group(2) or 1)
        language = ZH_TW if tag == "zh" or tag.startswith("zh-") else EN if tag == "en" or tag.startswith("en-") else None
        # Equal weights: the first listed wins (stable, as most clients list by preference).
        if language is not None and q > best_q:
            best, best_q = language, q
    return best


# code: (English, Traditional Chinese)
ERRORS: dict[str, tuple[str, str]] = {
    # requests
    "malformed_json": ("The request body is not valid JSON.", "請求內容不是有效的 JSON。"),
    "validation_error": ("The request is not valid.", "請求內容不正確。"),
    "malformed_base64": ("A field is not valid base64.", "欄位不是有效的 base64 編碼。"),
    "body_too_large": ("The request body is too large.", "請求內容過大。"),
    "invalid_cursor": ("The page cursor is not valid.", "分頁游標無效。"),
    "not_found": ("Not found.", "找不到資源。"),
    "method_not_allowed": ("This method is not allowed here.", "不允許此操作方法。"),
    # sign-in
    "missing_token": ("Please sign in.", "請先登入。"),
    "invalid_token": ("Your sign-in is not valid. Please sign in again.", "登入資訊無效，請重新登入。"),
    "token_expired": ("Your sign-in has expired.", "登入已逾時。"),
    "forbidden_role": ("This account cannot use the shareholder app.", "此帳號無法使用股東服務。"),
    "session_revoked": ("You have signed out on this device. Please sign in again.", "此裝置已登出，請重新登入。"),
    "credential_revoked": ("Your certificate has been revoked on this device.", "此裝置上的憑證已被廢止。"),
    "device_replaced": ("This device is no longer registered. Please activate the app again.",
                        "此裝置已不再綁定，請重新開通。"),
    "invalid_refresh_token": ("Your session has ended. Please sign in again.", "工作階段已結束，請重新登入。"),
    "refresh_token_reused": ("This session was used elsewhere and has been closed for your safety.",
                             "此工作階段疑似在他處使用，為保護您的安全已終止。"),
    # activation, device, PIN
    "unknown_activation": ("This activation is unknown.", "查無此開通資料。"),
    "activation_used": ("This activation code was already used.", "此開通碼已使用過。"),
    "activation_locked": ("Too many wrong codes. Ask your broker for a new one.", "錯誤次數過多，請洽券商重新申請開通碼。"),
    "activation_expired": ("The activation code has expired. Ask your broker for a new one.",
                           "開通碼已逾期，請洽券商重新申請。"),
    "invalid_activation_code": ("The activation code is wrong.", "開通碼錯誤。"),
    "unsupported_device_key": ("This device key type is not supported.", "不支援此裝置金鑰類型。"),
    "malformed_device_key": ("The device key is not valid.", "裝置金鑰無效。"),
    "bad_device_proof": ("The device could not be verified.", "裝置驗證失敗。"),
    "invalid_challenge": ("The request has expired or was already used. Please try again.", "驗證請求已逾時或已使用，請重試。"),
    "weak_pin": ("This PIN is too easy to guess or has the wrong length (6 to 12 digits).",
                 "PIN 碼過於簡單或長度不符（須為 6 至 12 位數字）。"),
    "wrong_pin": ("The PIN is wrong.", "PIN 碼錯誤。"),
    "pin_locked": ("Your PIN is locked. Ask your broker to unblock it.", "PIN 碼已鎖定，請洽券商解鎖。"),
    "credential_exists": ("You already hold a certificate.", "您已持有憑證。"),
    "unknown_credential": ("This certificate is unknown.", "查無此憑證。"),
    "no_credential": ("You hold no certificate.", "您尚未持有憑證。"),
    "credential_not_active": ("Your certificate is not active.", "您的憑證目前無法使用。"),
    "credential_suspended": ("Your certificate is suspended.", "您的憑證已暫停使用。"),
    "credential_changed": ("Your certificate changed meanwhile. Please try again.", "您的憑證已變更，請重試。"),
    "already_revoked": ("Your certificate is already revoked.", "您的憑證已被廢止。"),
    "not_active": ("Your certificate is not active.", "您的憑證目前無法使用。"),
    "invalid_reason": ("This revocation reason is not allowed.", "不允許此廢止原因。"),
    "unknown_device": ("This device is unknown.", "查無此裝置。"),
    # signing
    "second_factor_required": ("A device confirmation is required.", "需要裝置確認。"),
    "invalid_hashes": ("The document digest is not valid.", "文件摘要值無效。"),
    "invalid_sad": ("The signing authorisation is not valid.", "簽章授權無效。"),
    # meetings and ballots
    "unknown_meeting": ("You hold no shares in this meeting.", "查無您持股的此場股東會。"),
    "unknown_holder": ("You are not this holder on the register.", "您不是股東名簿上的此一股東。"),
    "holder_required": ("You hold shares under several holder numbers: choose one.", "您有多個股東戶號，請選擇一個。"),
    "voting_not_open": ("E-voting for this meeting is not open.", "本次股東會電子投票尚未開放。"),
    "voting_closed": ("The e-voting deadline has passed.", "電子投票已截止。"),
    "revocation_too_late": ("The deadline to revoke has passed: your e-vote stays in force.",
                            "撤銷期限已過，您的電子投票仍然有效。"),
    "nothing_to_revoke": ("You have no e-vote to revoke.", "您沒有可撤銷的電子投票。"),
    "duplicate_ballot": ("This ballot was already received.", "此選票已收到。"),
    "duplicate_revocation": ("This revocation was already received.", "此撤銷已收到。"),
    "not_the_holder": ("The signer is not the registered holder.", "簽章者不是名簿上的股東。"),
    "meeting_mismatch": ("The ballot was prepared for another meeting.", "此選票屬於其他股東會。"),
    "register_changed": ("The shareholder register changed. Please try again.", "股東名簿已變更，請重試。"),
    "tally_not_final": ("The result is final only once the meeting's tally is frozen.", "股東會計票確定後才能查詢。"),
    "unknown_ballot": ("This ballot is unknown.", "查無此選票。"),
    "unknown_item": ("An agenda item does not exist.", "議案不存在。"),
    "item_not_votable": ("An agenda item cannot be voted on electronically.", "此議案無法電子投票。"),
    "invalid_choice": ("A choice is not valid.", "投票選項無效。"),
    "split_not_allowed": ("Only nominee holders may split their votes.", "僅限受託股東可分割行使表決權。"),
    "split_exceeds_shares": ("A split vote uses more shares than you hold.", "分割表決權超過您的持股數。"),
    "unknown_candidate": ("A candidate does not exist.", "候選人不存在。"),
    "integer_out_of_range": ("A number is too large.", "數值過大。"),
    "certificate_revoked": ("Your certificate is revoked.", "您的憑證已被廢止。"),
    "certificate_on_hold": ("Your certificate is suspended.", "您的憑證已暫停使用。"),
    "certificate_expired": ("Your certificate has expired.", "您的憑證已過期。"),
    "certificate_not_good": ("Your certificate is not valid now.", "您的憑證目前無效。"),
    "invalid_signature": ("The signature is not valid.", "簽章無效。"),
    "ballot_too_large": ("The ballot is too large.", "選票內容過大。"),
    "unknown_submission": ("This prepared ballot is unknown.", "查無此待送出的選票。"),
    "submission_used": ("This prepared ballot was already submitted. Prepare a new one.", "此選票已送出過，請重新填寫。"),
    "submission_expired": ("This prepared ballot has expired. Prepare a new one.", "此選票已逾時，請重新填寫。"),
    "seal_missing": ("The platform cannot seal receipts right now.", "平台目前無法核發收據。"),
}

_BY_STATUS_ZH = {400: "請求內容不正確。", 401: "請重新登入。", 403: "不允許此操作。", 404: "找不到資源。",
                 409: "目前狀態無法執行此操作。", 413: "請求內容過大。", 415: "不支援的內容類型。",
                 422: "請求內容不正確。"}


def error_message(code: str, language: str, fallback: str, status: int) -> str:
    """The message for error ``code`` in ``language``; ``fallback`` is the service's English."""
    known = ERRORS.get(code)
    if language == ZH_TW:
        return known[1] if known else _BY_STATUS_ZH.get(status, "發生錯誤，請稍後再試。")
    return known[0] if known else fallback


def taipei_display(moment: dt.datetime, language: str) -> str:
    """How a person in Taiwan reads ``moment``: ``2026-06-01 23:59:59 (Taipei)`` in English,
    ``2026年06月01日 23:59:59（臺北時間）`` in Traditional Chinese."""
    if moment.tzinfo is None:
        raise ValueError("a moment to display must be timezone-aware")
    local = moment.astimezone(TAIPEI)
    if language == ZH_TW:
        return f"{local:%Y}年{local:%m}月{local:%d}日 {local:%H:%M:%S}（臺北時間）"
    return f"{local:%Y-%m-%d %H:%M:%S} (Taipei)"


def last_moment(closes_at: dt.datetime, language: str) -> str:
    """The last accepted second of a window closing (exclusively) at ``closes_at``."""
    return taipei_display(closes_at - dt.timedelta(seconds=1), language)


# Inbox texts: kind (or kind.variant): ((English title, body), (Chinese title, body)).
NOTIFICATIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "new_meeting": (("New shareholders' meeting", "You hold shares in {issuer}: {title}. E-voting closes {deadline}."),
                    ("新的股東會", "您持有{issuer}的股份：{title}。電子投票截止時間：{deadline}。")),
    "deadline": (("E-voting closes soon", "You have not voted on {title} yet. E-voting closes {deadline}."),
                 ("電子投票即將截止", "您尚未就「{title}」投票，電子投票將於{deadline}截止。")),
    "receipt.ballot": (("Ballot received", "Your ballot on {title} was received and logged."),
                       ("已收到您的選票", "您對「{title}」的選票已收到並記錄。")),
    "receipt.revocation": (("E-vote revoked", "Your e-vote on {title} is revoked. You may vote again or attend in person."),
                           ("電子投票已撤銷", "您對「{title}」的電子投票已撤銷，您可重新投票或親自出席。")),
    "result": (("Results published", "The final results of {title} are published."),
               ("股東會結果已公布", "「{title}」的最終表決結果已公布。")),
    "certificate.revoked": (("Certificate revoked", "Your signing certificate was revoked."),
                            ("憑證已廢止", "您的簽章憑證已被廢止。")),
    "certificate.suspended": (("Certificate suspended", "Your signing certificate is suspended."),
                              ("憑證已暫停", "您的簽章憑證已暫停使用。")),
    "certificate.resumed": (("Certificate active again", "Your signing certificate can be used again."),
                            ("憑證已恢復", "您的簽章憑證已恢復使用。")),
    "certificate.renewed": (("Certificate renewed", "Your signing certificate was renewed."),
                            ("憑證已更新", "您的簽章憑證已更新。")),
}


def notification_text(variant: str, language: str, **values: str) -> tuple[str, str]:
    """Title and body of an inbox entry of ``variant`` in ``language``."""
    english, chinese = NOTIFICATIONS[variant]
    title, body = chinese if language == ZH_TW else english
    return title, body.format(**values)
