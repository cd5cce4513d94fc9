"""The demo report renders the register of processors as an HTML table (issue 17)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from facelab.demo import REGISTER_COLUMNS, _register_table


class _Cells(HTMLParser):
    """Rows of <th>/<td> text, an oracle independent of the renderer."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in = False

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._in = True
            self.rows[-1].append("")

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th"):
            self._in = False

    def handle_data(self, data) -> None:
        if self._in:
            self.rows[-1][-1] += data


def test_the_register_is_a_table_with_one_row_per_processor(tmp_path: Path) -> None:
    doc = {
        "lab": "lab-1",
        "allowed_purposes": ["verify_1to1"],
        "forbidden_purposes": ["identify_1toN"],
        "processors": [
            {"processor": "Acme <Ltd>", "tenant": "acme", "purposes": ["verify_1to1", "train"],
             "status": "active", "destroyed": None, "subjects": 200},
            {"processor": "Borealis", "tenant": "borealis", "purposes": ["verify_1to1"],
             "status": "destroyed", "destroyed": "2026-12-01", "subjects": 0},
        ],
    }  # fmt: skip
    (tmp_path / "register.json").write_text(json.dumps(doc))
    html = _register_table(tmp_path / "register.json")
    p = _Cells()
    p.feed(html)
    assert p.rows[0] == [title for _, title in REGISTER_COLUMNS]
    col = {k: i for i, (k, _) in enumerate(REGISTER_COLUMNS)}
    acme, borealis = p.rows[1:]
    assert acme[col["processor"]] == "Acme <Ltd>"  # escaped in the HTML, text again here
    assert "<Ltd>" not in html
    assert acme[col["purposes"]] == "verify_1to1, train" and acme[col["destroyed"]] == ""
    assert borealis[col["status"]] == "destroyed" and borealis[col["subjects"]] == "0"
