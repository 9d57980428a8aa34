"""What the handlers need from the outside world, as protocols taking and giving domain values: one
module per context (postings, practices, ledgers, alerts, outages, transfers, operations, events,
access, maintenance, patient data, demo).

Only ``infra/`` implements them, and only ``infra/`` knows the query language behind them.
"""

from __future__ import annotations

from typing import Any

# Plain data a port only carries, never inspected by a handler: a ledger integration's settings (each
# kind's own shape, checked by its adapter), an event's JSON body, and the read side's rows that the
# API renders as JSON as they are (report rows, a posting's detail, an operation, ledger entries, the
# keys' trail). What a handler decides on is a typed value (Practice, Canary, Alert, Posting, ...).
Record = dict[str, Any]

