"""The PDF report of a frozen meeting, drawn with reportlab: pure (data in, PDF bytes out).

Headings are bilingual (Traditional Chinese and English). Every text is set in WenQuanYi
Micro Hei, a CJK TrueType font from the Debian package ``fonts-wqy-microhei``, embedded
(subset) in the PDF; without the font file the report is refused (:class:`ReportFontMissing`, 409)
rather than drawn with missing glyphs, and a character the font lacks is shown as its code
point (``[U+2A6D6]``), never dropped. Share figures are ints of any size, printed with
thousands separators; percentages are rounded for display only, computed in integers.
Times are shown in Asia/Taipei with the zone named.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from core.errors import Conflict
from voting.calendar import TAIPEI
from voting.report_data import AgendaEntry, ReportData

FONT_PACKAGE = "fonts-wqy-microhei"
FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FONT_NAME = "WQYMicroHei"
KIND_LABELS = {"acknowledgement": "承認 Acknowledgement", "ordinary": "普通決議 Ordinary resolution",
               "special": "特別決議 Special resolution", "election": "選舉 Election",
               "extempore": "臨時動議 Extempore motion", "amendment": "修正案 Amendment"}
VOTE_ROWS = (("for_votes", "贊成 For"), ("against_votes", "反對 Against"), ("abstain_votes", "棄權 Abstain"),
             ("not_voted", "未投票 Not voted"))
BAR_COLOURS = (colors.HexColor("#2e7d32"), colors.HexColor("#c62828"), colors.HexColor("#f9a825"),
               colors.HexColor("#9e9e9e"))
HEADER_BG = colors.HexColor("#e8eef7")
GRID = colors.HexColor("#9aa7b8")
_WIDTH = A4[0] - 36 * mm


class ReportFontMissing(Conflict):
    """The CJK font the report needs is not installed: install the Debian package it names.

    A freeze that meets it is refused like any report that cannot be sealed (409
    ``report_not_sealed``, nothing frozen) and succeeds once the package is installed."""

    code = "report_not_sealed"


@functools.cache
def _font_glyphs() -> frozenset[int]:
    """Register the report font once; the code points it can draw."""
    if not FONT_PATH.is_file():
        raise ReportFontMissing(f"the report font {FONT_PATH} is missing: apt-get install {FONT_PACKAGE}")
    font = TTFont(FONT_NAME, str(FONT_PATH), subfontIndex=0)
    pdfmetrics.registerFont(font)
    return frozenset(font.face.charToGlyph)


def drawable(text: str) -> str:
    """``text`` with every character the font cannot draw shown as its code point."""
    glyphs = _font_glyphs()
    return "".join(ch if ord(ch) in glyphs or ch in "\n\t" else f"[U+{ord(ch):04X}]" for ch in text)


def shares(value: int) -> str:
    """A share figure with thousands separators (exact for ints of any size)."""
    return f"{value:,}"


def percent(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole``, rounded half up to two places, in integers."""
    if whole <= 0:
        return "—"
    hundredths = (part * 20000 + whole) // (2 * whole)
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


def taipei(moment: dt.datetime) -> str:
    """A moment as a person in Taiwan reads it, the zone named."""
    return f"{moment.astimezone(TAIPEI):%Y-%m-%d %H:%M:%S} (Asia/Taipei, UTC+08:00)"


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=FONT_NAME, fontSize=9, leading=12, wordWrap="CJK")
    return {
        "base": base,
        "title": ParagraphStyle("title", parent=base, fontSize=17, leading=23, spaceAfter=4,
                                textColor=colors.HexColor("#1a3d6d")),
        "h1": ParagraphStyle("h1", parent=base, fontSize=13, leading=17, spaceBefore=10, spaceAfter=5,
                             textColor=colors.HexColor("#1a3d6d")),
        "h2": ParagraphStyle("h2", parent=base, fontSize=10.5, leading=14, spaceBefore=6, spaceAfter=3),
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=10, textColor=colors.HexColor("#444444")),
        "mono": ParagraphStyle("mono", parent=base, fontSize=8, leading=10, wordWrap="CJK"),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(drawable(text)).replace("\n", "<br/>"), style)


def _table(rows: list[list[Any]], widths: Sequence[float], *, header: bool = True,
           numeric_from: int = 1) -> Table:
    """A grid table in the report's font; columns from ``numeric_from`` right-aligned."""
    table = Table(rows, colWidths=list(widths), repeatRows=1 if header else 0, hAlign="LEFT")
    style = [("FONTNAME", (0, 0), (-1, -1), FONT_NAME), ("FONTSIZE", (0, 0), (-1, -1), 9),
             ("GRID", (0, 0), (-1, -1), 0.5, GRID), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
             ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
             ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5)]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), HEADER_BG))
    table.setStyle(TableStyle(style))
    return table


def title_block(data: ReportData, st: Mapping[str, ParagraphStyle]) -> list[Flowable]:
    """Report title and the meeting's identity."""
    rows = [
        [_p("發行公司 Issuer", st["base"]), _p(f"{data.issuer_code}  {data.issuer_name}", st["base"])],
        [_p("會議 Meeting", st["base"]), _p(data.meeting_title, st["base"])],
        [_p("會議日期 Meeting date", st["base"]), _p(data.meeting_date.isoformat(), st["base"])],
        [_p("凍結時間 Frozen at", st["base"]), _p(taipei(data.frozen_at), st["base"])],
        [_p("會議編號 Meeting ID", st["base"]), _p(data.meeting_public_id, st["mono"])],
    ]
    table = _table(rows, (45 * mm, _WIDTH - 45 * mm), header=False, numeric_from=2)
    table.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), HEADER_BG)]))
    return [_p("股東會表決結果報告\nShareholders' Meeting Voting Results", st["title"]), table]


def attendance_section(data: ReportData, st: Mapping[str, ParagraphStyle]) -> list[Flowable]:
    """Holders and votable shares present by mode, against outstanding shares."""
    tally = data.tally
    outstanding, present = int(tally["outstanding_shares"]), int(tally["present_shares"])  # type: ignore[call-overload]
    modes: Mapping[str, Mapping[str, int]] = tally["attendance"]  # type: ignore[assignment]
    labels = (("evote", "電子投票 E-vote"), ("in_person", "親自出席 In person"), ("proxy", "委託出席 Proxy"))
    rows: list[list[Any]] = [["出席方式 Mode", "股東人數\nHolders", "股數\nShares", "占已發行\n% of outstanding"]]
    for mode, label in labels:
        figures = modes.get(mode, {"holders": 0, "shares": 0})
        rows.append([label, shares(figures["holders"]), shares(figures["shares"]),
                     percent(figures["shares"], outstanding)])
    holders = sum(modes.get(mode, {"holders": 0})["holders"] for mode, _ in labels)
    rows.append(["出席合計 Present", shares(holders), shares(present), percent(present, outstanding)])
    rows.append(["已發行有表決權股數\nOutstanding voting shares", "", shares(outstanding), "100.00%"])
    table = _table(rows, (66 * mm, 22 * mm, 56 * mm, _WIDTH - 144 * mm))
    table.setStyle(TableStyle([("BACKGROUND", (0, 4), (-1, 4), colors.HexColor("#f3f6fa"))]))
    return [_p("出席 Attendance", st["h1"]), table, Spacer(1, 3),
            _p("電子投票股東視為親自出席（公司法第177條之1）。Electronic voters count as present in person "
               "(Company Act Art. 177-1). Shares without voting rights (Art. 179) are excluded.", st["small"])]


def quorum_text(figures: Mapping[str, Any]) -> str:
    """The quorum an item needed and whether the meeting met it."""
    met = "已達 met" if figures["quorum_met"] else "未達 not met"
    return f"{figures['quorum_required']} of outstanding — {met}"


def result_chart(figures: Mapping[str, Any]) -> Drawing:
    """For/against/abstain/not voted as horizontal bars, in % of the denominator (display only)."""
    denominator = int(figures["denominator"])
    values = [int(figures[key]) * 100 / denominator if denominator > 0 else 0.0 for key, _ in VOTE_ROWS]
    drawing = Drawing(_WIDTH, 84)
    chart = HorizontalBarChart()
    chart.x, chart.y, chart.width, chart.height = 105, 16, _WIDTH - 150, 62
    chart.data = [list(reversed(values))]
    chart.categoryAxis.categoryNames = [label for _, label in reversed(VOTE_ROWS)]
    chart.categoryAxis.labels.fontName = FONT_NAME
    chart.categoryAxis.labels.fontSize = 8
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 100, 25
    chart.valueAxis.labels.fontName = FONT_NAME
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.bars.strokeColor = None
    for index, colour in enumerate(reversed(BAR_COLOURS)):
        chart.bars[(0, index)].fillColor = colour
    chart.barLabelFormat = "%.2f%%"
    chart.barLabels.fontName = FONT_NAME
    chart.barLabels.fontSize = 7
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    drawing.add(chart)
    return drawing


def resolution_block(entry: AgendaEntry, figures: Mapping[str, Any], st: Mapping[str, ParagraphStyle]
                     ) -> Flowable:
    """One resolution: its figures in shares and % of the denominator, rule, outcome and bars."""
    denominator = int(figures["denominator"])
    rows: list[list[Any]] = [["", "股數\nShares", "占表決權數\n% of denominator"]]
    rows += [[label, shares(int(figures[key])), percent(int(figures[key]), denominator)] for key, label in VOTE_ROWS]
    rows.append(["表決權數 Denominator", shares(denominator), "100.00%"])
    rows.append(["利益迴避 Recused (Art. 178)", shares(int(figures["recused_shares"])), ""])
    table = _table(rows, (66 * mm, 56 * mm, 34 * mm))
    adopted = "通過 ADOPTED" if figures["adopted"] else "未通過 NOT ADOPTED"
    rule = (f"規則 Rule: {figures['rule']} · 出席門檻 Quorum {quorum_text(figures)} · "
            f"表決門檻 Majority {figures['majority_required']} of the denominator")
    outcome = Table([[_p(f"結果 Result: {adopted}", st["h2"])]], colWidths=[_WIDTH])
    outcome.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(
        "#e3f2e5" if figures["adopted"] else "#fbe4e4"))]))
    return KeepTogether([_p(item_heading(entry), st["h2"]), table, Spacer(1, 2), _p(rule, st["small"]),
                         result_chart(figures), outcome, Spacer(1, 6)])


def item_heading(entry: AgendaEntry) -> str:
    """E.g. ``案由 Item 2 · 特別決議 Special resolution — 修訂公司章程案 (Art. 277)``."""
    article = f" (Art. {entry.article})" if entry.article else ""
    return f"案由 Item {entry.key} · {KIND_LABELS.get(entry.kind, entry.kind)} — {entry.title}{article}"


def election_block(entry: AgendaEntry, figures: Mapping[str, Any], st: Mapping[str, ParagraphStyle]) -> Flowable:
    """One election: candidates ranked by votes, the elected, and any tie left to lots."""
    tied = set(figures["tie_for_last_seat"])
    cast = int(figures["votes_cast"])
    rows: list[list[Any]] = [["名次\nRank", "候選人\nCandidate", "得票數\nVotes", "占投票數\n% of cast",
                              "結果\nOutcome"]]
    for rank, candidate in enumerate(figures["candidates"], start=1):
        key = candidate["candidate_id"]
        outcome = "當選 Elected" if candidate["elected"] else ("抽籤 Lot (tie)" if key in tied else "")
        name = entry.candidate_names.get(key, key)
        rows.append([str(rank), _p(f"{name} ({key})", st["base"]), shares(int(candidate["votes"])),
                     percent(int(candidate["votes"]), cast), outcome])
    table = _table(rows, (14 * mm, 58 * mm, 50 * mm, 24 * mm, _WIDTH - 146 * mm), numeric_from=2)
    table.setStyle(TableStyle([("ALIGN", (0, 0), (0, -1), "CENTER"), ("ALIGN", (-1, 0), (-1, -1), "LEFT")]))
    facts = (f"應選席次 Seats: {figures['seats']} · 可投票權數 Votes available: "
             f"{shares(int(figures['votes_available']))} · 投票權數 Votes cast: {shares(cast)} · "
             f"無效選票 Void ballots: {figures['void_ballots']} · 規則 Rule: {figures['rule']} · "
             f"出席門檻 Quorum {quorum_text(figures)}")
    parts: list[Flowable] = [_p(item_heading(entry), st["h2"]), _p(facts, st["small"]), Spacer(1, 3), table]
    if tied:
        names = "、".join(f"{entry.candidate_names.get(k, k)} ({k})" for k in figures["tie_for_last_seat"])
        parts.append(_p(f"最後席次同票，依法抽籤決定 Tie for the last seat — {figures['seats_by_lot']} seat(s) "
                        f"to be drawn by lot among: {names}", st["h2"]))
    if figures["unfilled_seats"]:
        parts.append(_p(f"未補足席次 Unfilled seats: {figures['unfilled_seats']}", st["h2"]))
    parts.append(Spacer(1, 6))
    return KeepTogether(parts)


def items_sections(data: ReportData, st: Mapping[str, ParagraphStyle]) -> list[Flowable]:
    """Resolutions, then elections, in agenda order."""
    items: Sequence[Mapping[str, Any]] = data.tally["items"]  # type: ignore[assignment]
    resolutions = [f for f in items if f["kind"] != "election"]
    elections = [f for f in items if f["kind"] == "election"]
    flow: list[Flowable] = []
    if resolutions:
        flow.append(_p("議案表決結果 Resolutions", st["h1"]))
        flow += [resolution_block(data.entry(f["item_id"]), f, st) for f in resolutions]
    if elections:
        flow.append(_p("選舉結果 Elections", st["h1"]))
        flow += [election_block(data.entry(f["item_id"]), f, st) for f in elections]
    return flow


def ballot_log_section(data: ReportData, st: Mapping[str, ParagraphStyle]) -> list[Flowable]:
    """The sealed tree head of the ballot log the figures come from."""
    head = data.tree_head
    flow: list[Flowable] = [_p("投票紀錄 Ballot log (signed tree head, RFC 9162)", st["h1"])]
    if head is None:
        return flow + [_p("無電子投票紀錄 No ballot was logged.", st["base"])]
    rows = [[_p("紀錄筆數 Tree size", st["base"]), _p(shares(head.tree_size), st["base"])],
            [_p("根雜湊 Root hash (SHA-256)", st["base"]), _p(head.root_hash.hex(), st["mono"])],
            [_p("簽發時間 Issued at", st["base"]), _p(taipei(head.issued_at), st["base"])]]
    table = _table(rows, (50 * mm, _WIDTH - 50 * mm), header=False, numeric_from=2)
    table.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), HEADER_BG)]))
    note = ("本報告以平台電子印章簽署（PAdES）。This report is sealed by the platform (PAdES); the tree head "
            "is sealed too and can be checked against the public log endpoints.")
    return flow + [table, Spacer(1, 3), _p(note, st["small"])]


class _NumberedCanvas(canvas.Canvas):
    """A canvas that knows the page count when it draws each footer."""

    footer_text = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initialFontName", FONT_NAME)
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        for number, state in enumerate(self._pages, start=1):
            self.__dict__.update(state)
            self._footer(number, len(self._pages))
            super().showPage()
        super().save()

    def _footer(self, number: int, total: int) -> None:
        self.setFont(FONT_NAME, 7.5)
        self.setFillColor(colors.HexColor("#555555"))
        self.line(18 * mm, 14 * mm, A4[0] - 18 * mm, 14 * mm)
        self.drawString(18 * mm, 10 * mm, self.footer_text)
        self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"第 {number} 頁，共 {total} 頁 Page {number} of {total}")


def render_report(data: ReportData) -> bytes:
    """The report as PDF bytes (raises :class:`ReportFontMissing` without the CJK font)."""
    _font_glyphs()
    st = _styles()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm, bottomMargin=20 * mm,
        title=drawable(f"{data.issuer_code} {data.meeting_title} — voting results"), author="cloudseal",
        subject=f"meeting {data.meeting_public_id}", creator="cloudseal")
    flow = (title_block(data, st) + attendance_section(data, st) + items_sections(data, st)
            + ballot_log_section(data, st))
    footer = drawable(f"cloudseal · {data.issuer_code} · {data.meeting_public_id}")
    numbered = type("_Canvas", (_NumberedCanvas,), {"footer_text": footer})
    document.build(flow, canvasmaker=numbered)
    return buffer.getvalue()
