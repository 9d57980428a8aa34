"""6. How the data grows: the light load's p50 and paypost's idle CPU on an empty database, then again
once 1,000 practices are set up and 150,000 postings stored (a tenth of them FAILED, with their tasks
and their patients' flags open), each within a quarter of the empty database's; and MongoDB's
profiler, on meanwhile, showing no operation that examined more than 10,000 documents.

On a paypost of its own (its own database), so that the figures of the empty database are taken in
the same run, on the same machine, a minute before. ``paypost bench`` runs it last; alone:

    python -m paypost.bench.phases.growth --practices 1000 --postings 150000
 The stored postings are written as paypost
writes them (``infra/mongo/postings.py``), straight to the database: what is measured is paypost
running steadily over them, not how fast they were made.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from paypost.bench.load import PRACTICE, services
from paypost.bench.outcomes import settled
from paypost.bench.phases.idle import quiet
from paypost.bench.phases.light import timed
from paypost.bench.probes import CpuMeter, child_pid
from paypost.bench.rendering import Results, percentile
from paypost.bench.rig import Rig, started_rig
from paypost.domain.alerts import AlertState
from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import PAYPOST_ACTOR, AuditEntry, KeptMessage, Posting, PostingKey
from paypost.infra.mongo.alerts import MongoAlertStore, state_fields
from paypost.infra.mongo.database import LEDGER_ENTRY, Collections, Doc
from paypost.infra.mongo.directory import MongoPracticeDirectory
from paypost.infra.mongo.failure_groups import group_fields
from paypost.infra.mongo.postings import error_doc, new_doc
from paypost.infra.rabbit.watch import watch_events

EXAMINED_AT_MOST = 10_000  # documents one operation may examine (the profiler check)
WITHIN = 1.25  # the grown database's figures against the empty one's
PAGE = 5_000  # postings inserted at a time


async def measure(amqp: str, mongo: str, results: Results, log: Callable[[str], None], wall_offset: float, *,
                  practices: int, postings: int, light_seconds: float, idle_seconds: float) -> None:
    async with started_rig(amqp, mongo, Results(), log, wall_offset) as rig:
        assert rig.paypost.proc is not None
        pid = rig.paypost.proc.pid
        meter = CpuMeter({"paypost": pid, "paypost sealer": child_pid(pid, "spawn_main")})
        empty_p50, empty_idle, empty_woken = await _steady(rig, meter, "e", light_seconds, idle_seconds)
        rig.log(f"growth: {practices:,} practices set up, {postings:,} postings stored (a tenth FAILED, "
                "with their alerts)")
        started = time.perf_counter()
        await _grow(rig.c, practices, postings)
        rig.log(f"growth: stored in {time.perf_counter() - started:.0f} s; sealed as paypost would have as they came")
        await settled(rig.c, at_most=900)  # the sealer's catching up on them is not paypost's steady state
        rig.log("growth: the profiler on, then the same again")
        await rig.c.db.command({"profile": 1, "filter": {"docsExamined": {"$gt": EXAMINED_AT_MOST}}})
        try:
            grown_p50, grown_idle, grown_woken = await _steady(rig, meter, "g", light_seconds, idle_seconds)
        finally:
            await rig.c.db.command({"profile": 0})
        over = await rig.c.db["system.profile"].find(
            {}, {"ns": 1, "op": 1, "planSummary": 1, "docsExamined": 1, "_id": 0}).to_list(None)
    results.add(f"growth: light load p50 at 10/s, {postings:,} postings", grown_p50, "ms", "growth_p50_10pps_ms",
                f"empty database {empty_p50:.2f} ms, {_times(grown_p50, empty_p50)}; target <= x{WITHIN}")
    results.add("  idle: CPU a second, paypost and its sealer", grown_idle, "ms", "growth_idle_cpu_ms_per_s",
                f"empty database {empty_idle:.2f} ms, {_times(grown_idle, empty_idle)}; wakeups a second "
                f"{grown_woken:.1f}, empty {empty_woken:.1f}; target <= x{WITHIN}")
    # Only where each operation ran and how: a profiled command's filter may name a patient.
    shown = "; ".join(f"{o.get('op')} {o.get('ns')} {o.get('planSummary', '')} {o.get('docsExamined'):,} docs"
                      for o in over[:5])
    results.add(f"  operations examining over {EXAMINED_AT_MOST:,} documents", len(over), "", "growth_ops_over_10k",
                shown or "none; target: none")


def _times(grown: float, empty: float) -> str:
    """How many times the empty database's figure (the idle figures are read to the nanosecond; a
    quiet spell that spent nothing reads 0)."""
    return f"x{grown / empty:.2f}" if empty > 0 else "the empty one read 0"


async def _steady(rig: Rig, meter: CpuMeter, tag: str, light_seconds: float,
                  idle_seconds: float) -> tuple[float, float, float]:
    """The light load's p50 at 10/s, then paypost's and its sealer's CPU a second with nothing arriving,
    and how often they woke a second (what a rare round of background work falling in the window shows)."""
    async with watch_events(rig.amqp, [f"posting.loaded.{PRACTICE}"]) as events:
        waited = await timed(rig, events, 10, max(20, int(10 * light_seconds)), f"{tag}{uuid.uuid4().hex[:4]}-")
    per_second, woken = await quiet(rig, meter, idle_seconds)
    rig.log("  idle: " + ", ".join(f"{name} {ms:.1f} ms/s ({woken.get(name, 0):.1f} wakeups/s)"
                                   for name, ms in per_second.items()))
    return percentile(waited, 50), sum(per_second.values()), sum(woken.values())


async def _grow(c: Collections, practices: int, postings: int) -> None:
    directory = MongoPracticeDirectory(c)
    now = datetime.now(UTC)
    names = [f"grown-{n:04d}" for n in range(practices)]
    for chunk in range(0, practices, 100):
        await asyncio.gather(*(directory.put_practice(p, p, {"kind": "builtin"}, True, now)
                               for p in names[chunk:chunk + 100]))
    alerts = MongoAlertStore(c)
    for start in range(0, postings, PAGE):
        docs, failed = [], []
        for n in range(start, min(start + PAGE, postings)):
            doc, posting = _posting(names[n % practices], n, now - timedelta(minutes=postings - n))
            docs.append(doc)
            if posting.load_status is LoadStatus.FAILED:
                failed.append(posting)
        await c.postings.insert_many(docs, ordered=False)
        opened = [alerts.open_task(p, p.received_at, sent=False) for p in failed]
        opened += [alerts.open_flag(p, p.received_at, sent=False) for p in failed]
        await asyncio.gather(*opened)
    # An office leaves its alerts open for weeks: these have long been escalated (the escalation's
    # own sweep reads only those not escalated yet, whatever their number).
    await c.alerts.update_many({}, {"$set": {**state_fields(AlertState.ESCALATED), "escalated_at": now}})


def _posting(practice: str, n: int, at: datetime) -> tuple[Doc, Posting]:
    """The ``n``-th stored posting: LOADED with its ledger entry, or (one in ten) FAILED, not mapped."""
    account = f"acct-{n % 5_000}"
    posting = Posting(key=PostingKey(practice, f"grown-{n}"), kind=PostingKind.PAYMENT,
                      load_status=LoadStatus.LOADED, event_id=str(uuid.uuid4()), received_at=at,
                      patient_account_id=account, amount=Decimal("25.00"), currency="USD", method="card",
                      merchant_transfer_id=f"MT-{n // 500}", occurred_at=at)
    message = KeptMessage(b"{}", "payment.posted", None)
    received = AuditEntry(at, PAYPOST_ACTOR, "received")
    if n % 10 == 0:
        error = load_error(LoadErrorCode.PATIENT_NOT_MAPPED)
        failed = replace(posting, load_status=LoadStatus.FAILED, load_error=error)
        doc = new_doc(failed, message, [received, AuditEntry(at, PAYPOST_ACTOR, "failed")], LoadStatus.FAILED)
        doc.update(load_error=error_doc(error), **group_fields(practice, error, account, None, at))
        return doc, failed
    doc = new_doc(posting, message, [received, AuditEntry(at, PAYPOST_ACTOR, "loaded")], LoadStatus.LOADED)
    doc.update(ehr_patient_id="EHR-1", ledger_entry_id=f"e-{n}", **{LEDGER_ENTRY: {
        "entry_id": f"e-{n}", "ehr_patient_id": "EHR-1", "payment_id": posting.key.payment_id, "refund_id": None,
        "kind": "payment", "reversal_id": None, "amount": posting.amount, "currency": "USD", "posted_at": at}})
    return doc, posting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--practices", type=int, default=1_000)
    parser.add_argument("--postings", type=int, default=150_000)
    parser.add_argument("--light-seconds", type=float, default=15.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr)  # progress, beside the figures on stdout

    async def run() -> Results:
        results = Results()
        async with services(log) as (amqp, mongo):
            await measure(amqp, mongo, results, log, time.time() - time.perf_counter(), practices=args.practices,
                          postings=args.postings, light_seconds=args.light_seconds, idle_seconds=args.idle_seconds)
        return results

    results = asyncio.run(run())
    width = max(len(name) for name, _, _ in results.rows)
    for name, value, note in results.rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()
