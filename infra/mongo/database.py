"""The MongoDB connection, collections and indexes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson.codec_options import CodecOptions, TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, NotPrimaryError, OperationFailure

Doc = dict[str, Any]
Client = AsyncMongoClient[Doc]  # a client as ``connect`` makes it, for a module that must not import the driver

# Errors that mean "the database did not answer": worth retrying, never a FAILED posting.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect, ConnectionFailure, NetworkTimeout, NotPrimaryError,
)


# Amounts met lately, as Decimal128 (a Decimal128 is immutable, so one can be shared): a payment's
# amount goes into its row twice (the posting's, the ledger entry's) and copays repeat, while making
# a Decimal128 is a few microseconds of Python each time.
_KEPT_DECIMALS = 4096


class DecimalCodec(TypeCodec):
    """Money is Decimal in Python and Decimal128 in MongoDB, never a float."""

    python_type = Decimal
    bson_type = Decimal128

    def __init__(self) -> None:
        self._made: dict[str, Decimal128] = {}

    def transform_python(self, value: Decimal) -> Decimal128:
        text = str(value)  # by its text, not its value: 125.0 and 125.00 are equal Decimals, stored apart
        made = self._made.get(text)
        if made is None:
            if len(self._made) >= _KEPT_DECIMALS:
                self._made.clear()
            made = self._made[text] = Decimal128(value)
        return made

    def transform_bson(self, value: Decimal128) -> Decimal:
        return value.to_decimal()


CODECS: CodecOptions[Doc] = CodecOptions(tz_aware=True, type_registry=TypeRegistry([DecimalCodec()]))


# For a write that a later write on the same path makes durable: the PENDING row a posting starts
# as, and the built-in ledger's entry, are each followed by the posting's outcome, written with the
# default (majority, journaled) write concern. MongoDB's journal and oplog are one ordered log, so
# once the outcome is durable everything written before it is too; if the process or the server
# stops before that, the message was not acknowledged and is delivered again. Only the outcome
# waits for the disk.
ACKNOWLEDGED: WriteConcern = WriteConcern(w=1, j=False)

# The built-in ledger's entry of a LOADED posting is kept in its row, written by the outcome's write
# (``paypost.infra.ledgers.builtin``), and read through this index.
LEDGER_ENTRY = "ledger_entry"
LEDGER_INDEX = "builtin_ledger"


def connect(uri: str, **kwargs: Any) -> AsyncMongoClient[Doc]:
    """A client; it connects lazily, so nothing is opened here."""
    return AsyncMongoClient(uri, **{"tz_aware": True, "serverSelectionTimeoutMS": 5000,
                                    "serverMonitoringMode": "poll", **kwargs})


@dataclass(frozen=True)
class Collections:
    """paypost's collections. The names are the project's own choice (not in the contract)."""

    db: AsyncDatabase[Doc]

    def _c(self, name: str) -> AsyncCollection[Doc]:
        return self.db.get_collection(name, codec_options=CODECS)

    @property
    def postings(self) -> AsyncCollection[Doc]:
        return self._c("postings")

    @property
    def ledger_entries(self) -> AsyncCollection[Doc]:
        return self._c("ledger_entries")

    @property
    def ehr_patients(self) -> AsyncCollection[Doc]:
        return self._c("ehr_patients")

    @property
    def practices(self) -> AsyncCollection[Doc]:
        return self._c("practices")

    @property
    def mappings(self) -> AsyncCollection[Doc]:
        return self._c("patient_mappings")

    @property
    def transfers(self) -> AsyncCollection[Doc]:
        return self._c("transfers")

    @property
    def commands(self) -> AsyncCollection[Doc]:
        return self._c("processed_commands")

    @property
    def operations(self) -> AsyncCollection[Doc]:
        return self._c("operations")

    @property
    def alerts(self) -> AsyncCollection[Doc]:
        return self._c("alerts")

    @property
    def leases(self) -> AsyncCollection[Doc]:
        return self._c("leases")

    @property
    def outages(self) -> AsyncCollection[Doc]:
        return self._c("ledger_outages")


async def ensure_indexes(c: Collections) -> None:
    """Create the indexes every query and every exactly-once rule relies on."""
    newest = [("received_at", DESCENDING), ("_id", DESCENDING)]
    await c.postings.create_indexes([
        IndexModel([("received_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("practice_id", ASCENDING), *newest]),
        IndexModel([("practice_id", ASCENDING), ("load_status", ASCENDING), *newest]),
        # Only a posting with a Load Error is in these two (most payments load, and never enter
        # them); an equality or $in on the field implies the filter, so the planner uses them.
        IndexModel([("practice_id", ASCENDING), ("load_error.code", ASCENDING), *newest], name="by_error_code",
                   partialFilterExpression={"load_error.code": {"$exists": True}}),
        IndexModel([("practice_id", ASCENDING), ("merchant_transfer_id", ASCENDING), *newest]),
        IndexModel([("practice_id", ASCENDING), ("patient_account_id", ASCENDING), ("load_status", ASCENDING)]),
        IndexModel([("load_status", ASCENDING), *newest]),
        IndexModel([("practice_id", ASCENDING), ("refunded_payment_id", ASCENDING)], name="refunds_by_payment",
                   partialFilterExpression={"refunded_payment_id": {"$exists": True}}),
        IndexModel([("retry_token", ASCENDING)], sparse=True),
        # Postings waiting for their practice's system (paypost.domain.outages), in the order received.
        IndexModel([("practice_id", ASCENDING), ("received_at", ASCENDING), ("_id", ASCENDING)], name="parked",
                   partialFilterExpression={"parked_at": {"$exists": True}}),
    ])
    # The built-in ledger's entries kept in their postings' rows (paypost.infra.ledgers.builtin): a
    # patient's, in the order posted; only rows holding one are in it.
    await c.postings.create_indexes([
        IndexModel([("practice_id", ASCENDING), (f"{LEDGER_ENTRY}.ehr_patient_id", ASCENDING),
                    (f"{LEDGER_ENTRY}.posted_at", ASCENDING)], name=LEDGER_INDEX,
                   partialFilterExpression={LEDGER_ENTRY: {"$exists": True}}),
    ])
    # Their forerunners held every posting (a sparse compound index skips only a document
    # missing all its fields): dropped once the new ones exist.
    for earlier in ("practice_id_1_load_error.code_1_received_at_-1__id_-1", "practice_id_1_refunded_payment_id_1"):
        with contextlib.suppress(OperationFailure):
            await c.postings.drop_index(earlier)
    # The built-in ledger's entries of earlier versions, and those a purge moved out of their rows.
    await c.ledger_entries.create_indexes([
        IndexModel([("practice_id", ASCENDING), ("ehr_patient_id", ASCENDING), ("posted_at", ASCENDING)]),
    ])
