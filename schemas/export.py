"""Export the JSON Schema of every message (contract sections 1.1 to 1.3)."""

from __future__ import annotations

import json
from pathlib import Path

from paypost.schemas.messages import (
    INBOUND_MESSAGES,
    AlertEvent,
    DepositMatchedEvent,
    PostingEvent,
    TransferReconciledEvent,
    WireModel,
)

# Every inbound message by its routing key, then paypost's events.
SCHEMAS: dict[str, type[WireModel]] = {
    **INBOUND_MESSAGES,
    "posting.event": PostingEvent,
    "alert.event": AlertEvent,
    "transfer.reconciled": TransferReconciledEvent,
    "deposit.matched": DepositMatchedEvent,
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
