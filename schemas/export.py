"""Export the JSON Schema of every message (contract sections 1.1 to 1.3)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.messages import (
    AlertEvent,
    PatientMappingUpdated,
    PaymentPosted,
    PaymentRefunded,
    PostingClear,
    PostingEvent,
    PostingRetry,
    TransferReconciledEvent,
    TransferSettled,
    WireModel,
)

SCHEMAS: dict[str, type[WireModel]] = {
    "payment.posted": PaymentPosted,
    "payment.refunded": PaymentRefunded,
    "transfer.settled": TransferSettled,
    "patient.mapping.updated": PatientMappingUpdated,
    "posting.retry": PostingRetry,
    "posting.clear": PostingClear,
    "posting.event": PostingEvent,
    "alert.event": AlertEvent,
    "transfer.reconciled": TransferReconciledEvent,
}


def schema_texts() -> dict[str, str]:
    """Each message's JSON Schema, as the text committed under ``schemas/json``."""
    texts = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"paypost/v1/{name}.json"
        texts[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return texts


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in schema_texts().items():
        path = directory / filename
        path.write_text(text)
        written.append(path)
    return written
