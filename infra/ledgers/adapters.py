"""Ledger adapters for other systems: packages that add a ledger kind through the entry point group
``paypost.ledgers`` (README, "Ledger adapters for other systems").

An entry point's name is the kind a practice's ledger names (``{kind: "<name>", ...settings}``); its
object is a ``paypost.domain.ports.LedgerAdapter``, called with the settings. Entry points are listed once,
when paypost starts, and each is loaded when first needed. The contract's kinds (``builtin``,
``http``) are never an adapter's.

A practice's settings are never logged, shown in an error or put in a Load Error: they may say where
a system is and, in ``auth``, how to sign in. What is logged is the kind and an error's class.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

import orjson
import structlog
from pydantic import ValidationError

from paypost.domain.errors import LoadFailure, TransientFailure
from paypost.domain.integrations import (
    CONTRACT_KINDS,
    LEDGER_KIND_PATTERN,
    SEALED,
    InvalidLedgerSettings,
    UnknownLedgerKind,
    opened,
)
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports import Record
from paypost.domain.ports.ledgers import Ledger, LedgerAdapter, SecretBox
from paypost.domain.posting import Integration, LedgerEntryRequest, LedgerReceipt

log = structlog.get_logger("paypost.ledger_adapters")

ENTRY_POINT_GROUP = "paypost.ledgers"

_KIND = re.compile(LEDGER_KIND_PATTERN)


def installed_entry_points() -> dict[str, list[EntryPoint]]:
    """The group's entry points by name, those that can never be a practice's kind left out (logged)."""
    found: dict[str, list[EntryPoint]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in CONTRACT_KINDS or not _KIND.match(point.name):
            log.warning("ledger_adapter_ignored", kind=point.name, value=point.value,
                        reason="a contract kind" if point.name in CONTRACT_KINDS else "not a kind's name")
            continue
        found.setdefault(point.name, []).append(point)
    return found


def describe(error: Exception) -> str:
    """An adapter's refusal in words that carry none of the settings' values: a pydantic error's
    locations and messages (its input left out), another ``ValueError``'s message."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'settings'}: {item['msg']}"
                         for item in error.errors(include_input=False, include_url=False)[:8])
    return str(error)[:300] or type(error).__name__


class Unconfigured:
    """The ledger of a practice whose adapter is missing or refuses its settings: each load fails with
    INTEGRATION_NOT_CONFIGURED, for the office to see and fix (the integration, not the payment)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED, self.detail)


class Guarded:
    """An adapter's ledger as paypost posts to it: what the port names (``LoadFailure``,
    ``TransientFailure``) passes as it is; any other error is the adapter's own bug, and fails the
    payment LEDGER_UNAVAILABLE (for the office to retry once it is mended) with only its class named:
    a traceback's locals could hold the practice's settings."""

    def __init__(self, kind: str, ledger: Ledger) -> None:
        self.kind = kind
        self.ledger = ledger

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        try:
            return await self.ledger.post(request)
        except (LoadFailure, TransientFailure):
            raise
        except Exception as exc:  # an adapter's unexpected error is classified here, never a traceback
            log.warning("ledger_adapter_failed", kind=self.kind, error=type(exc).__name__)
            raise LoadFailure(LoadErrorCode.LEDGER_UNAVAILABLE,
                              f"The adapter of ledger kind {self.kind!r} failed ({type(exc).__name__}).") from exc

    async def aclose(self) -> None:
        await _close(self.kind, self.ledger)


class AdapterLedgers:
    """The ledgers of the kinds installed adapters provide: ``LedgerKinds`` for saving a practice, and
    its ledger for loading one (built once per practice and settings, closed when paypost stops)."""

    def __init__(self, adapters: Mapping[str, LedgerAdapter | list[EntryPoint]], secrets: SecretBox | None) -> None:
        self._found = dict(adapters)
        self._loaded: dict[str, LedgerAdapter] = {}
        self._secrets = secrets  # None: paypost has no PAYPOST_SECRET_KEY to open an ``auth`` with
        self._ledgers: dict[tuple[str, str, str], Ledger] = {}

    @classmethod
    def discovered(cls, secrets: SecretBox | None) -> AdapterLedgers:
        """The adapters installed in this Python environment."""
        return cls(installed_entry_points(), secrets)

    def installed(self) -> list[str]:
        return sorted(self._found)

    def _adapter(self, kind: str) -> LedgerAdapter:
        """``kind``'s adapter; ``UnknownLedgerKind`` if none is installed, ``InvalidLedgerSettings`` if
        it does not load (it is not the practice's settings then, but saving them would not help)."""
        if kind in self._loaded:
            return self._loaded[kind]
        found = self._found.get(kind)
        if found is None:
            kinds = ", ".join([*CONTRACT_KINDS, *self.installed()])
            raise UnknownLedgerKind(f"Ledger kind {kind!r} is not installed in this paypost; its kinds are: {kinds}.")
        if not isinstance(found, list):
            self._loaded[kind] = found
            return found
        if len(found) > 1:
            raise InvalidLedgerSettings(f"Ledger kind {kind!r} is registered by more than one package "
                                        f"({', '.join(p.value for p in found)}); uninstall all but one.")
        try:
            loaded: object = found[0].load()
        except Exception as exc:  # a broken package, whatever it raises, is told as such, not a 500
            log.warning("ledger_adapter_unloadable", kind=kind, error=type(exc).__name__)
            raise InvalidLedgerSettings(f"The adapter of ledger kind {kind!r} could not be loaded "
                                        f"({type(exc).__name__}).") from exc
        if not callable(loaded):
            raise InvalidLedgerSettings(f"The entry point of ledger kind {kind!r} is not a ledger adapter "
                                        "(it cannot be called with settings).")
        adapter = cast(LedgerAdapter, loaded)  # a callable: what it returns is checked at each call
        self._loaded[kind] = adapter
        return adapter

    def _build(self, kind: str, settings: dict[str, object]) -> Ledger:
        """The adapter's ledger for ``settings``; ``InvalidLedgerSettings`` (its words) if it refuses them."""
        adapter = self._adapter(kind)
        try:
            ledger = adapter(settings)
        except (ValueError, TypeError) as exc:
            raise InvalidLedgerSettings(f"Ledger kind {kind!r} refused its settings: {describe(exc)}") from exc
        except Exception as exc:  # an adapter's own bug at set-up is a 400 naming it, never a 500
            log.warning("ledger_adapter_failed", kind=kind, error=type(exc).__name__)
            raise InvalidLedgerSettings(f"The adapter of ledger kind {kind!r} failed on these settings "
                                        f"({type(exc).__name__}).") from exc
        if not callable(getattr(ledger, "post", None)):
            raise InvalidLedgerSettings(f"The adapter of ledger kind {kind!r} gave no ledger (it has no post).")
        return ledger

    async def check(self, kind: str, settings: Record) -> None:
        """What saving a practice asks: its adapter takes these settings (their ``auth`` still plain)."""
        await _close(kind, self._build(kind, dict(settings)))

    def for_integration(self, integration: Integration) -> Ledger:
        """The practice's ledger, as its adapter builds it from the settings saved (``auth`` opened);
        a practice whose adapter is gone or refuses them gets INTEGRATION_NOT_CONFIGURED for each load."""
        key = (integration.practice_id, integration.kind, _fingerprint(integration.settings))
        ledger = self._ledgers.get(key)
        if ledger is not None:
            return ledger
        try:
            ledger = Guarded(integration.kind, self._build(integration.kind, self._opened(integration.settings)))
        except (UnknownLedgerKind, InvalidLedgerSettings) as exc:
            # Kept too: the same settings fail the same way until they change (or paypost restarts
            # with the package mended), and a failure logged once is not logged for every payment.
            ledger = Unconfigured(str(exc))
        self._ledgers[key] = ledger
        return ledger

    def _opened(self, settings: Mapping[str, object]) -> dict[str, object]:
        auth = settings.get("auth")
        if not isinstance(auth, dict) or not isinstance(auth.get(SEALED), str):
            return dict(settings)
        if self._secrets is None:
            raise InvalidLedgerSettings("paypost has no PAYPOST_SECRET_KEY to open the practice's credentials with.")
        try:
            secret = self._secrets.open(auth[SEALED])
        except ValueError as exc:
            raise InvalidLedgerSettings(str(exc)) from exc
        return {**settings, "auth": opened(auth, secret)}

    async def close(self) -> None:
        """Close every ledger built (those with an ``aclose``); one that fails to close is logged, not raised."""
        ledgers, self._ledgers = self._ledgers, {}
        for (_, kind, _), ledger in ledgers.items():
            await _close(kind, ledger)


async def _close(kind: str, ledger: Ledger) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(ledger, "aclose", None)
    if aclose is None:
        return
    try:
        result = aclose()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - an adapter that fails to close must not stop paypost stopping
        log.warning("ledger_adapter_close_failed", kind=kind, error=type(exc).__name__)


def _fingerprint(settings: Mapping[str, object]) -> str:
    """The settings as one short digest (a changed integration gets a new ledger); never shown."""
    return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:16]
