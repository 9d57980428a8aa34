"""Every place the CLI reads or writes paypost's database itself, rather than through a service.

Each is one function named for what it gets, taking plain values, so that each can be replaced by
one call of the service layer without touching the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.mongo import Collections, Doc, connect
from infra.reports import PostingFilter, PostingReport

if TYPE_CHECKING:
    from infra.audit_seals import Verification
    from infra.settings import Settings
    from paypost.bootstrap import Paypost

PREVIEW_FIELDS = {"message": 0, "audit": 0, "attempts": 0}


async def report_page(settings: Settings, practice_id: str | None, status: str | None, error_code: str | None,
                      merchant_transfer_id: str | None, limit: int) -> list[Doc]:
    """The first page of the Merchant Transfers report, newest first."""
    client = connect(settings.mongodb_uri)
    try:
        docs, _ = await PostingReport(Collections(client[settings.mongodb_db])).page(
            PostingFilter(practice_id=practice_id, status=status, error_code=error_code,
                          merchant_transfer_id=merchant_transfer_id),
            limit, None)
    finally:
        await client.close()
    return docs


async def failed_payment_ids(paypost: Paypost, practice_id: str, error_code: str | None,
                             merchant_transfer_id: str | None, patient_account_id: str | None) -> list[str]:
    """The payment (or refund) ids of the practice's FAILED postings matching every filter given."""
    where = PostingFilter(practice_id=practice_id, status="FAILED", error_code=error_code,
                          merchant_transfer_id=merchant_transfer_id, patient_account_id=patient_account_id)
    return [k.payment_id for k in await paypost.posting_commands.failed_keys(where.query())]


async def postings_by_id(paypost: Paypost, practice_id: str, payment_ids: list[str]) -> list[Doc]:
    """These postings of the practice, without their kept message, audit trail and attempts."""
    return await paypost.collections.postings.find(
        {"practice_id": practice_id, "payment_id": {"$in": payment_ids}}, PREVIEW_FIELDS).to_list(None)


async def operation_progress(paypost: Paypost, operation_id: str) -> Doc:
    """A Save Changes operation as `GET /api/v1/operations/{id}` shows it: status, done, items."""
    op = await paypost.operation_store.get(operation_id)
    assert op is not None  # recorded before its id was returned; only a publish that failed discards it
    return op


async def verify_audit_trail(settings: Settings) -> Verification:
    """Seal what is not sealed yet, then recompute the whole hash chain."""
    from infra.audit_seals import AuditSealer

    client = connect(settings.mongodb_uri)
    try:
        sealer = AuditSealer(Collections(client[settings.mongodb_db]))
        await sealer.seal()
        return await sealer.verify()
    finally:
        await client.close()
