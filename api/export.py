"""The Merchant Transfers report as CSV (contract section 8): one row per posting, streamed.

Rows are read from the database a batch at a time and written out as they come, so an export of
a million postings holds one batch in memory, never the whole report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from paypost.api.render import row
from paypost.domain.ports import Record

# The report's columns (a row of GET /postings, its Load Error in two columns).
COLUMNS = ["practice_id", "payment_id", "kind", "patient_account_id", "ehr_patient_id", "amount", "currency",
           "method", "merchant_transfer_id", "refunded_payment_id", "load_status", "load_error_code",
           "load_error_message", "attempts_count", "clear_verified", "assignee", "notes_count", "received_at",
           "updated_at",
           # (1.2) money that moves back, after the columns of version 1.1 so their positions stay
           "reversed_payment_id", "dispute_id", "return_code"]
NUMERIC = {"amount", "attempts_count", "notes_count"}
# A text cell starting with one of these is a formula to a spreadsheet: it is written with a
# leading apostrophe, so that opening the export never runs what a publisher put in an id.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if column not in NUMERIC and text.startswith(FORMULA_START):
        return "'" + text
    return text


def csv_values(doc: Record) -> list[str]:
    shown = row(doc)
    error = shown.pop("load_error") or {}
    shown["load_error_code"] = error.get("code")
    shown["load_error_message"] = error.get("message")
    return [_cell(c, shown.get(c)) for c in COLUMNS]


def _lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


async def csv_chunks(docs: AsyncIterator[Record]) -> AsyncIterator[bytes]:
    """The header, then the rows, ``ROWS_PER_CHUNK`` per chunk, as the documents arrive."""
    yield _lines([COLUMNS])
    pending: list[list[str]] = []
    async for doc in docs:
        pending.append(csv_values(doc))
        if len(pending) >= ROWS_PER_CHUNK:
            yield _lines(pending)
            pending = []
    if pending:
        yield _lines(pending)
