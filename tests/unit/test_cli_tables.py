"""Every listing's table reads in 80 columns (issue 30): the columns that fit whole, those left out named,
``--wide`` for all; a value is text, never rich markup."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pytest
from rich.console import Console

from paypost.cli.dashboards import DASHBOARD_COLUMNS
from paypost.cli.keys import KEY_COLUMNS, KEY_PRIORITY
from paypost.cli.month_end import DEPOSIT_COLUMNS, DEPOSIT_PRIORITY
from paypost.cli.patient_data import ACCESS_COLUMNS, ACCESS_PRIORITY
from paypost.cli.tables import Columns, print_fitted

DEPOSITS = [{"deposit_id": f"DEP-2026-10-21-000{n}", "amount": "1164.90", "deposited_at": "2026-10-21T09:00:00+00:00",
             "status": "ambiguous", "merchant_transfer_ids": [], "difference": None,
             "candidates": [["MT-20261020-0005"], ["MT-20261020-0006"]]} for n in range(3)]
KEYS = [{"key_id": "k_4f1c2b9a8d7e6f50", "name": "front desk, Clinic of the Valley", "role": "operator",
         "practices": ["clinic-of-the-valley", "clinic-on-the-hill"], "created_at": "2026-11-02T08:15:00+00:00",
         "created_by": "root", "expires_at": "2027-11-02T08:15:00+00:00", "revoked_at": None}]
ACCESS = [{"at": "2026-12-06T15:41:15.038049+00:00", "key_name": "support desk", "role": "viewer",
           "client": "10.20.30.40", "action": "read", "route": "/api/v1/postings/{practice_id}/{payment_id}",
           "practice_id": "clinic-of-the-valley", "payment_ids": ["pay-7f3a9c21", "pay-7f3a9c22"], "count": 2}]
DASHBOARDS = [{"user": "dash-clinic-of-the-valley", "practice": "clinic-of-the-valley",
               "pattern": "^(failure|posting)\\.[^.]+\\.clinic-of-the-valley$"}]

Listing = tuple[Columns, Sequence[str], list[dict[str, Any]], str]
LISTINGS: dict[str, Listing] = {
    "deposits": (DEPOSIT_COLUMNS, DEPOSIT_PRIORITY, DEPOSITS, "DEP-2026-10-21-0001"),
    "api-keys list": (KEY_COLUMNS, KEY_PRIORITY, KEYS, "k_4f1c2b9a8d7e6f50"),
    "access-log": (ACCESS_COLUMNS, ACCESS_PRIORITY, ACCESS, "pay-7f3a9c21, pay-7f3a9c22"),
    "dashboards list": (DASHBOARD_COLUMNS, tuple(DASHBOARD_COLUMNS), DASHBOARDS, "dash-clinic-of-the-valley"),
}


def rendered(columns: Columns, priority: Sequence[str], rows: list[dict[str, Any]], width: int,
             wide: bool = False) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    print_fitted(columns, priority, rows, wide=wide, console=console)
    return console.export_text()


@pytest.mark.parametrize("listing", LISTINGS)
def test_in_80_columns_a_listing_shows_whole_columns_and_names_those_left_out(listing: str) -> None:
    columns, priority, rows, first_value = LISTINGS[listing]
    text = rendered(columns, priority, rows, 80)
    assert max(map(len, text.splitlines())) <= 80, text
    assert "…" not in text
    assert first_value in text  # the column that matters most, whole
    wide = rendered(columns, priority, rows, 80, wide=True)
    assert "not shown" not in wide
    for header in priority:
        assert header in wide, header
    if "not shown:" in text:  # what did not fit is said, with how to see it
        assert "--wide shows every column" in " ".join(text.split())
    else:
        assert text.replace(" ", "") == wide.replace(" ", "")  # it all fitted: nothing to widen


def test_a_value_that_looks_like_markup_is_shown_as_it_is() -> None:
    text = rendered(DASHBOARD_COLUMNS, tuple(DASHBOARD_COLUMNS),
                    [{"user": "[bold]x[/bold]", "practice": "p", "pattern": "^[a-z]+$"}], 80)
    assert "[bold]x[/bold]" in text and "^[a-z]+$" in text
