"""How paypost finds, checks, builds and closes the ledgers of installed adapters
(``infra/ledgers/adapters.py``), with adapters written here; the example adapter, installed as a
package, runs in tests/integration/test_ledger_port.py and test_ledger_adapters.py."""

from __future__ import annotations

import secrets
from importlib.metadata import EntryPoint
from typing import cast

import pytest
from pydantic import BaseModel, ConfigDict
from structlog.testing import capture_logs

from paypost.domain.errors import LedgerUnreachable, LoadFailure, TransientFailure
from paypost.domain.integrations import InvalidLedgerSettings, UnknownLedgerKind
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import LedgerAdapter
from paypost.domain.posting import Integration, LedgerEntryRequest, LedgerReceipt
from paypost.infra.ledgers import adapters as ledger_adapters
from paypost.infra.ledgers.adapters import AdapterLedgers, Unconfigured, installed_entry_points
from paypost.infra.ledgers.secrets import SecretBox
from paypost.testing.ledger_suite import payment_request

CANARY = "canary-2d7e"


class Recorded:
    """A ledger that remembers the settings it was built with, and whether it was closed."""

    def __init__(self, settings: dict[str, object]) -> None:
        self.settings = settings
        self.closed = 0

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        return LedgerReceipt(entry_id="e-1")

    async def aclose(self) -> None:
        self.closed += 1


class RecordingAdapter:
    def __init__(self) -> None:
        self.built: list[Recorded] = []

    def __call__(self, settings: dict[str, object]) -> Recorded:
        ledger = Recorded(settings)
        self.built.append(ledger)
        return ledger


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


def strict_adapter(settings: dict[str, object]) -> Recorded:
    return Recorded(Strict.model_validate(settings).model_dump())


def integration(kind: str, **settings: object) -> Integration:
    return Integration("clinic-a", kind, True, dict(settings))


async def test_an_unknown_kind_names_itself_and_every_kind_installed() -> None:
    adapters = AdapterLedgers({"zeta": RecordingAdapter(), "alpha": RecordingAdapter()}, None)

    with pytest.raises(UnknownLedgerKind) as refused:
        await adapters.check("sftp", {})

    assert str(refused.value) == ("Ledger kind 'sftp' is not installed in this paypost; "
                                  "its kinds are: builtin, http, alpha, zeta.")


async def test_an_adapters_pydantic_refusal_says_where_and_why_but_not_what_was_given() -> None:
    adapters = AdapterLedgers({"strict": strict_adapter}, None)

    with capture_logs() as logs, pytest.raises(InvalidLedgerSettings) as refused:
        await adapters.check("strict", {"path": 7, "secret_word": CANARY})

    assert str(refused.value) == ("Ledger kind 'strict' refused its settings: path: Input should be a valid string; "
                                  "secret_word: Extra inputs are not permitted")
    assert CANARY not in repr(logs)


@pytest.mark.parametrize(("found", "says"), [
    ([EntryPoint("broken", "no_such_module_7a1:adapter", "paypost.ledgers")],
     "The adapter of ledger kind 'broken' could not be loaded (ModuleNotFoundError)."),
    ([EntryPoint("broken", "json:__doc__", "paypost.ledgers")],
     "The entry point of ledger kind 'broken' is not a ledger adapter (it cannot be called with settings)."),
    ([EntryPoint("broken", "json:dumps", "paypost.ledgers"), EntryPoint("broken", "json:loads", "paypost.ledgers")],
     "Ledger kind 'broken' is registered by more than one package (json:dumps, json:loads); uninstall all but one."),
])
async def test_a_broken_package_is_told_as_such(found: list[EntryPoint], says: str) -> None:
    adapters = AdapterLedgers({"broken": found}, None)

    with pytest.raises(InvalidLedgerSettings) as refused:
        await adapters.check("broken", {})

    assert str(refused.value) == says


async def test_an_adapter_failing_on_its_settings_is_named_with_its_errors_class_only() -> None:
    def failing(settings: dict[str, object]) -> Recorded:
        raise RuntimeError(f"could not use {settings}")

    adapters = AdapterLedgers({"buggy": failing}, None)

    with capture_logs() as logs, pytest.raises(InvalidLedgerSettings) as refused:
        await adapters.check("buggy", {"password_hint": CANARY})

    assert str(refused.value) == "The adapter of ledger kind 'buggy' failed on these settings (RuntimeError)."
    assert logs == [{"event": "ledger_adapter_failed", "kind": "buggy", "error": "RuntimeError",
                     "log_level": "warning"}]


async def test_an_adapter_giving_no_ledger_is_refused() -> None:
    odd = cast("LedgerAdapter", lambda settings: object())  # an adapter that breaks its port, on purpose
    adapters = AdapterLedgers({"odd": odd}, None)

    with pytest.raises(InvalidLedgerSettings, match="gave no ledger"):
        await adapters.check("odd", {})


async def test_the_ledger_built_to_check_settings_is_closed_at_once() -> None:
    adapter = RecordingAdapter()

    await AdapterLedgers({"rec": adapter}, None).check("rec", {"path": "/x"})

    [checked] = adapter.built
    assert (checked.settings, checked.closed) == ({"path": "/x"}, 1)


async def test_a_practices_ledger_is_built_once_per_settings_and_closed_when_paypost_stops() -> None:
    adapter = RecordingAdapter()
    adapters = AdapterLedgers({"rec": adapter}, None)

    first = adapters.for_integration(integration("rec", path="/a"))
    again = adapters.for_integration(integration("rec", path="/a"))
    changed = adapters.for_integration(integration("rec", path="/b"))
    await adapters.close()

    assert first is again and changed is not first
    assert [(ledger.settings, ledger.closed) for ledger in adapter.built] == [({"path": "/a"}, 1), ({"path": "/b"}, 1)]


async def test_the_adapter_is_given_its_auth_opened_and_paypost_keeps_it_sealed() -> None:
    box = SecretBox(secrets.token_urlsafe(32))
    adapter = RecordingAdapter()
    stored = {"kind": "oauth2_client_credentials", "client_id": "c", "sealed": box.seal(CANARY)}

    adapters = AdapterLedgers({"rec": adapter}, box)
    adapters.for_integration(integration("rec", path="/a", auth=stored))

    [built] = adapter.built
    assert built.settings == {"path": "/a", "auth": {"kind": "oauth2_client_credentials", "client_id": "c",
                                                     "client_secret": CANARY}}


async def test_without_a_secret_key_a_sealed_auth_is_integration_not_configured() -> None:
    adapter = RecordingAdapter()
    ledger = AdapterLedgers({"rec": adapter}, None).for_integration(
        integration("rec", auth={"kind": "bearer", "sealed": "gAAAA-sealed"}))

    with pytest.raises(LoadFailure) as failed:
        await ledger.post(payment_request())

    assert failed.value.code is LoadErrorCode.INTEGRATION_NOT_CONFIGURED
    assert failed.value.detail == "paypost has no PAYPOST_SECRET_KEY to open the practice's credentials with."
    assert adapter.built == []


async def test_a_practice_whose_adapter_is_gone_fails_each_load_as_integration_not_configured() -> None:
    ledger = AdapterLedgers({}, None).for_integration(integration("sftp", host="h"))

    assert isinstance(ledger, Unconfigured)
    with pytest.raises(LoadFailure) as failed:
        await ledger.post(payment_request())
    assert failed.value.code is LoadErrorCode.INTEGRATION_NOT_CONFIGURED
    assert failed.value.detail is not None and "'sftp' is not installed" in failed.value.detail


def test_entry_points_that_cannot_be_a_practices_kind_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    group = "paypost.ledgers"
    points = [EntryPoint("http", "a:b", group), EntryPoint("Bad Name", "a:c", group), EntryPoint("mine", "a:d", group)]
    monkeypatch.setattr(ledger_adapters, "entry_points", lambda group: points)

    with capture_logs() as logs:
        found = installed_entry_points()

    assert found == {"mine": [points[2]]}
    assert [(e["kind"], e["reason"]) for e in logs] == [("http", "a contract kind"), ("Bad Name", "not a kind's name")]


def test_a_practice_whose_adapter_fails_is_told_so_once_not_for_every_payment() -> None:
    def failing(settings: dict[str, object]) -> Recorded:
        raise RuntimeError("down")

    adapters = AdapterLedgers({"buggy": failing}, None)

    with capture_logs() as logs:
        ledgers = [adapters.for_integration(integration("buggy")) for _ in range(3)]

    assert all(isinstance(ledger, Unconfigured) for ledger in ledgers)
    assert [e["event"] for e in logs] == ["ledger_adapter_failed"]


async def test_an_adapters_unexpected_error_fails_the_payment_naming_only_its_class() -> None:
    class Buggy(Recorded):
        async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
            raise KeyError(self.settings["secret_word"])

    ledger = AdapterLedgers({"buggy": Buggy}, None).for_integration(integration("buggy", secret_word=CANARY))

    with capture_logs() as logs, pytest.raises(LoadFailure) as failed:
        await ledger.post(payment_request())

    assert failed.value.code is LoadErrorCode.LEDGER_UNAVAILABLE
    assert failed.value.detail == "The adapter of ledger kind 'buggy' failed (KeyError)."
    assert logs == [{"event": "ledger_adapter_failed", "kind": "buggy", "error": "KeyError", "log_level": "warning"}]


@pytest.mark.parametrize("error", [LoadFailure(LoadErrorCode.LEDGER_REJECTED, "no"), TransientFailure("busy"),
                                   LedgerUnreachable("no answer after 3 attempts")])
async def test_what_the_port_names_passes_from_an_adapter_as_it_is(error: Exception) -> None:
    class Raising(Recorded):
        async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
            raise error

    ledger = AdapterLedgers({"r": Raising}, None).for_integration(integration("r"))

    with pytest.raises(type(error)) as raised:
        await ledger.post(payment_request())
    assert raised.value is error
