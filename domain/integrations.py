"""A practice's ledger integration as the office sets it up: its credentials are write-only.

``auth`` is ``{kind: "bearer", token}`` or ``{kind: "oauth2_client_credentials", token_url,
client_id, client_secret, scope?}`` (contract section 7). The secret (``token``,
``client_secret``) is sealed before it is stored, kept as ``sealed``, and never shown: what is
shown is the auth's kind and other fields, and ``configured: true``.

Beside the contract's kinds (``builtin`` and ``http``) a practice's ledger may be of a kind an
installed adapter provides (``infra/ledgers/adapters.py``): its settings are the adapter's to check,
and its ``auth``, if it has one, is sealed and shown as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paypost.domain.errors import PaypostError

SECRET_FIELDS = ("token", "client_secret")
SEALED = "sealed"
# The field each kind of auth keeps its secret in (contract section 7).
SECRET_FIELD_OF = {"bearer": "token", "oauth2_client_credentials": "client_secret"}
# The ledger kinds of the contract; any other kind is an installed adapter's.
CONTRACT_KINDS = ("builtin", "http")
# An adapter's kind: the name of its entry point, as a practice's ledger names it.
LEDGER_KIND_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


@dataclass(frozen=True, slots=True)
class Practice:
    """A practice set up in paypost: its name, its ledger integration as stored (``kind`` and the
    kind's settings, a secret only sealed) and whether its payments load."""

    practice_id: str
    name: str
    ledger: Mapping[str, Any]
    enabled: bool


class SecretKeyError(PaypostError, ValueError):
    """The configured secret key is missing, malformed or does not open a stored secret."""


class MissingSecretKey(PaypostError, ValueError):
    """Credentials with a secret were given, and paypost has no key to seal them with."""


class UnknownLedgerKind(PaypostError, ValueError):
    """A practice's ledger names a kind that no installed adapter provides; the message names the
    kind and the kinds this paypost has."""


class InvalidLedgerSettings(PaypostError, ValueError):
    """An adapter refused a practice's ledger settings; the message says why, never with their values."""


def secret_of(auth: dict[str, Any]) -> str | None:
    """The secret an auth carries as given (before it is sealed)."""
    for field in SECRET_FIELDS:
        value = auth.get(field)
        if isinstance(value, str) and value:
            return value
    return None


def without_secret(auth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in auth.items() if k not in SECRET_FIELDS and k != SEALED}


def opened(auth: dict[str, Any], secret: str) -> dict[str, Any]:
    """A sealed auth as its adapter is given it: the secret back in its kind's field, the seal gone."""
    return {**without_secret(auth), SECRET_FIELD_OF.get(str(auth.get("kind")), "token"): secret}


def shown(ledger: dict[str, Any]) -> dict[str, Any]:
    """A ledger integration as an answer shows it: the auth's secret, sealed or not, left out."""
    auth = ledger.get("auth")
    if not isinstance(auth, dict):
        return ledger
    return {**ledger, "auth": {**without_secret(auth), "configured": True}}
