"""Accessibility basics of the main pages: the document's language, a label for every field,
and a name for every group of controls."""

from __future__ import annotations

from html.parser import HTMLParser

from fastapi import FastAPI

from tests.console.world import World, browser_for

UNLABELLED_TYPES = ("hidden", "submit", "button")


class Fields(HTMLParser):
    """The form fields of a page, the ids labels point at, and fields wrapped in a label."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.groups: list[dict[str, str | None]] = []
        self.html_lang: str | None = None
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.html_lang = values.get("lang")
        elif tag == "label":
            self._in_label += 1
            if values.get("for"):
                self.label_for.add(values["for"] or "")
        elif tag in ("input", "select", "textarea") and values.get("type") not in UNLABELLED_TYPES:
            self.fields.append({**values, "wrapped": "yes" if self._in_label else None})
        if values.get("role") == "group" or tag == "fieldset":
            self.groups.append(values)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


def test_every_field_of_the_main_pages_has_a_label_and_the_page_a_language(app: FastAPI, world: World) -> None:
    pages = {"hana": [f"/console/meetings/{world.meeting_id}"],
             "olivia": ["/console/ra/enrolments", "/console/ra/enrolments/new", "/console/ra/investors"],
             "root": ["/console/ops/brokers", "/console/ops/certificates", "/console/ops/audit"],
             None: ["/console/sign-in"]}
    for username, paths in pages.items():
        client = browser_for(app, username, **{"Accept-Language": "zh-TW"})
        for path in paths:
            parsed = Fields()
            parsed.feed(client.get(path).text)
            assert parsed.html_lang == "zh-Hant-TW", path
            assert parsed.fields, path
            for field in parsed.fields:
                assert field["wrapped"] or field.get("id") in parsed.label_for or field.get("aria-label"), (path, field)
    language = Fields()
    language.feed(browser_for(app, "hana").get("/console/meetings").text)
    assert {"role": "group", "class": "langs", "aria-label": "Language"} in language.groups
