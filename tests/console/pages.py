"""Reading the console's report pages in tests: the tables under their titles, and the
charts' JSON."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any


class _Tables(HTMLParser):
    """Each ``<h3>`` title followed by a table: title → rows of cell texts (the header
    row first, when there is one)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._title: list[str] | None = None
        self._last_title = ""
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h3":
            self._title = []
        elif tag == "table" and self._last_title:
            self._rows = self.tables.setdefault(self._last_title, [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3" and self._title is not None:
            self._last_title = "".join(self._title).strip()
            self._title = None
        elif tag == "table":
            self._rows = None
            self._last_title = ""
        elif tag in ("td", "th") and self._cell is not None and self._rows is not None:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    """The page's report tables by title (the last table of a repeated title wins)."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def section(html: str, element_id: str) -> str:
    """The HTML of the ``<section id=...>`` of `element_id`."""
    start = html.index(f'<section class="experiment" id="{element_id}">')
    end = html.find('<section class="experiment"', start + 1)
    return html[start:] if end < 0 else html[start:end]


def row(table: list[list[str]], first: str) -> dict[str, str]:
    """The row whose first cell is `first`, keyed by the header row's cells."""
    headers = table[0]
    found = next(r for r in table[1:] if r and r[0] == first)
    return dict(zip(headers, found, strict=True))


def chart(html: str, element_id: str) -> dict[str, Any]:
    """The JSON spec of the chart container `element_id`."""
    match = re.search(rf'id="{re.escape(element_id)}" data-chart="\w+"><script '
                      r'type="application/json">(.*?)</script>', html, re.S)
    assert match is not None, element_id
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec
