"""The deposit matching's time for a practice with 500 open transfers (contract section 11, issue 28).

``python -m paypost.bench.deposits`` prints one line per case and, last, one JSON object. It times
the search alone (``paypost.domain.deposits.candidates``), the part that grows with the open
transfers; the database reads around it are two indexed queries whatever their number.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from paypost.domain.deposits import OpenTransfer, ReconciliationSettings, candidates, in_window

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _transfers(rng: random.Random, count: int, spread_hours: int) -> list[OpenTransfer]:
    return [OpenTransfer(f"MT-{i}", Decimal(rng.randint(5_000, 900_000)) / 100,
                         AT - timedelta(hours=rng.randint(0, spread_hours))) for i in range(count)]


def case(name: str, spread_hours: int, parts: int, tolerance: str, runs: int = 20) -> dict[str, object]:
    """Median and worst time of ``runs`` searches for a deposit of ``parts`` transfers among 500."""
    rng = random.Random(f"{name}-{parts}")  # noqa: S311  # amounts, not secrets
    settings = ReconciliationSettings(Decimal(tolerance), 3)
    times, outcomes, in_pool = [], [], 0
    for _ in range(runs):
        open_ = _transfers(rng, 500, spread_hours)
        pool = [t for t in open_ if in_window(t, AT, settings.days)]
        in_pool = len(pool)
        amount = sum((t.net_amount for t in rng.sample(pool, parts)), Decimal("0.00"))
        started = time.perf_counter()
        found = candidates(amount, AT, open_, settings)
        times.append(time.perf_counter() - started)
        outcomes.append("cut short" if found.cut_short else
                        "one" if len(found.candidates) == 1 else "ambiguous" if found.candidates else "none")
    return {"case": name, "parts": parts, "tolerance": tolerance, "in_window": in_pool,
            "median_ms": round(statistics.median(times) * 1000, 2), "max_ms": round(max(times) * 1000, 2),
            "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))}}


def main() -> None:
    results = []
    for name, spread in (("500 open over 60 days", 24 * 60), ("500 open, all in the 3-day window", 70)):
        for parts in (1, 2, 3, 5):
            for tolerance in ("0.00", "1.00"):
                result = case(name, spread, parts, tolerance)
                results.append(result)
                sys.stdout.write(f"{name:36} {parts} part(s) ±{tolerance}: {result['in_window']:3} in window, "
                                 f"median {result['median_ms']:8} ms, max {result['max_ms']:8} ms  "
                                 f"{result['outcomes']}\n")
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
