"""``paypost postings`` in a terminal (issue 30): in 80 columns, the columns that fit whole, never a
value cut to "PATIEN…"; ``--wide`` for every column."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from paypost.cli.report import print_report


def rows() -> list[dict[str, Any]]:
    return [{"practice_id": "demo-clinic-on-its-system", "payment_id": f"PAY-3f9a1c-{n}", "kind": "payment",
             "patient_account_id": "P29-7781", "amount": "1250.00", "load_status": "FAILED",
             "load_error": {"code": "PATIENT_NOT_MAPPED"}, "received_at": "2026-12-06T15:41:15.038049+00:00"}
            for n in range(3)]


def rendered(width: int, **options: Any) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    print_report(rows(), console=console, **options)
    return console.export_text().splitlines()


def test_in_80_columns_each_column_shown_is_whole_and_those_left_out_are_named() -> None:
    lines = rendered(80)
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "…" not in text
    for whole in ("PAY-3f9a1c-0", "FAILED", "PATIENT_NOT_MAPPED", "1250.00", "P29-7781"):
        assert whole in text, whole
    assert "not shown:" in text and "--wide" in text  # what did not fit is said, not silently cut


def test_one_practice_asked_for_is_the_title_not_a_column() -> None:
    text = "\n".join(rendered(80, practice="demo-clinic-on-its-system"))
    assert "practice demo-clinic-on-its-system" in text
    assert text.count("demo-clinic-on-its-system") == 1
    assert "P29-7781" in text  # the room the practice left goes to the next column that fits


def test_wide_shows_every_column_and_a_wide_terminal_needs_no_flag() -> None:
    for lines in (rendered(80, wide=True), rendered(200)):
        text = "\n".join(lines)
        assert "not shown" not in text
        for header in ("practice", "payment", "kind", "account", "amount", "Load Status", "Load Error", "received"):
            assert header in text, header
    assert max(map(len, rendered(200))) <= 200
    assert max(map(len, rendered(80, wide=True))) > 80  # past the edge, as asked: a pager or a wide window reads it
