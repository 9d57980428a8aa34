"""A practice's ledger integration as the office sets it up: its credentials are write-only.

``auth`` is ``{kind: "bearer", token}`` or ``{kind: "oauth2_client_credentials", token_url,
client_id, client_secret, scope?}`` (contract section 7). The secret (``token``,
``client_secret``) is sealed before it is stored, kept as ``sealed``, and never shown: what is
shown is the auth's kind and other fields, and ``configured: true``.
"""

from __future__ import annotations

from typing import Any

from domain.errors import PaypostError

SECRET_FIELDS = ("token", "client_secret")
SEALED = "sealed"


class MissingSecretKey(PaypostError, ValueError):
    """Credentials with a secret were given, and paypost has no key to seal them with."""


def secret_of(auth: dict[str, Any]) -> str | None:
    """The secret an auth carries as given (before it is sealed)."""
    for field in SECRET_FIELDS:
        value = auth.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def without_secret(auth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in auth.items() if k not in SECRET_FIELDS and k != SEALED}


def shown(ledger: dict[str, Any]) -> dict[str, Any]:
    """A ledger integration as an answer shows it: the auth's secret, sealed or not, left out."""
    auth = ledger.get("auth")
    if not isinstance(auth, dict):
        return ledger
    return {**ledger, "auth": {**without_secret(auth), "configured": True}}
