"""The OpenAPI document (``/api/v1/openapi.json``) with what only the assembled app knows: the ledger
kinds installed adapters provide. Everything else in it comes from the routes and their models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from paypost.domain.integrations import CONTRACT_KINDS
from paypost.schemas.api.practices import SETTING_REF, SETTING_SCHEMA, SETTING_SCHEMA_NAME


def install(app: FastAPI, *, ledger_kinds: Sequence[str]) -> None:
    """``app``'s document states an adapter ledger's ``kind`` as the kinds installed (``ledger_kinds``):
    any other is a 400 unknown_ledger_kind, so a client can only send one of them. With no adapter
    installed, the contract's kinds (builtin, http) are the only ones, and the adapter's shape goes."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = made()
        schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
        adapter = schemas.get("AdapterLedgerConfig")
        if adapter is not None:
            kinds = [kind for kind in ledger_kinds if kind not in CONTRACT_KINDS]
            schemas[SETTING_SCHEMA_NAME] = SETTING_SCHEMA
            adapter["additionalProperties"] = SETTING_REF
            if kinds:
                adapter["properties"]["kind"]["enum"] = kinds
                adapter["properties"]["kind"]["description"] = (
                    "a kind an installed adapter provides (any other: 400 unknown_ledger_kind); its other "
                    "fields are the adapter's settings, which it checks (400 invalid_ledger_settings)")
            else:
                _drop_ref(doc, "#/components/schemas/AdapterLedgerConfig")
                del schemas["AdapterLedgerConfig"], schemas[SETTING_SCHEMA_NAME]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents replacing app.openapi this way


def _drop_ref(node: Any, ref: str) -> None:
    """Take ``ref`` out of every ``oneOf`` under ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("oneOf"), list):
            node["oneOf"] = [item for item in node["oneOf"] if item != {"$ref": ref}]
        for value in node.values():
            _drop_ref(value, ref)
    elif isinstance(node, list):
        for value in node:
            _drop_ref(value, ref)
