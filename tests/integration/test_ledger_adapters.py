"""A ledger kind from an installed adapter (README, "Ledger adapters for other systems"), through
the API, the real broker and the real database, with the example adapter of
examples/paypost-ledger-example (installed beside paypost, as .ci/run installs it).

The shared ledger suite runs against the example in test_ledger_port.py; here the example's own
tests run as its author runs them, outside paypost's test session.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
from paypost_ledger_example import LedgerFile

from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "paypost-ledger-example"
KIND = "example-sqlite"


def test_the_example_adapter_is_installed_under_the_entry_point_group() -> None:
    [point] = [p for p in entry_points(group="paypost.ledgers") if p.name == KIND]
    assert point.value == "paypost_ledger_example:open_ledger"


def test_the_adapters_author_runs_the_shipped_suite_in_the_adapters_own_project() -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 passed" in result.stdout  # the suite's twelve tests and the four refused settings


@pytest.fixture
def ledger_file(tmp_path: Path) -> LedgerFile:
    file = LedgerFile(tmp_path / "clinic-x.sqlite")
    file.add_patient("clinic-x", "EHR-1")
    return file


async def test_a_practice_of_an_adapters_kind_loads_its_payments_into_that_system(
    api: httpx.AsyncClient, upstream: Upstream, ledger_file: LedgerFile,
) -> None:
    r = await api.put("/api/v1/practices/clinic-x", json={
        "name": "X", "ledger": {"kind": KIND, "path": ledger_file.path}, "enabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["ledger"] == {"kind": KIND, "path": ledger_file.path}

    body = await upstream.payment(practice_id="clinic-x", amount="80.25")
    posting = await wait_status(api, "clinic-x", body["payment_id"], "LOADED")

    [entry] = ledger_file.entries()
    assert (entry.practice_id, entry.patient_id, entry.payment_id, str(entry.amount), entry.currency) == (
        "clinic-x", "EHR-1", body["payment_id"], "80.25", "USD")
    assert f"ledger entry {entry.entry_id}" in [a["detail"] for a in posting["audit"]]


async def test_the_adapters_load_error_reaches_the_office_and_a_retry_loads_once_it_is_fixed(
    api: httpx.AsyncClient, upstream: Upstream, ledger_file: LedgerFile,
) -> None:
    r = await api.put("/api/v1/practices/clinic-x", json={
        "name": "X", "ledger": {"kind": KIND, "path": ledger_file.path}, "enabled": True})
    assert r.status_code == 200, r.text
    body = await upstream.payment(practice_id="clinic-x", ehr_patient_id="EHR-9")

    failed = await wait_status(api, "clinic-x", body["payment_id"], "FAILED")
    assert failed["load_error"]["code"] == "PATIENT_NOT_FOUND"
    assert "holds no patient EHR-9" in failed["load_error"]["message"]

    ledger_file.add_patient("clinic-x", "EHR-9")
    r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-x", "retry": [body["payment_id"]],
                                                         "clear": []})
    assert r.status_code == 202, r.text
    await wait_status(api, "clinic-x", body["payment_id"], "LOADED")
    assert [e.payment_id for e in ledger_file.entries()] == [body["payment_id"]]


@pytest.mark.api_only
async def test_a_kind_no_adapter_provides_is_400_naming_it_and_the_installed_ones(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/practices/clinic-y", json={"name": "Y", "ledger": {"kind": "sftp", "host": "h"}})

    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "code": "unknown_ledger_kind",
        "message": f"Ledger kind 'sftp' is not installed in this paypost; its kinds are: builtin, http, {KIND}."}
    assert (await api.get("/api/v1/practices/clinic-y")).status_code == 404  # nothing saved


@pytest.mark.api_only
async def test_settings_the_adapter_refuses_are_400_with_its_reason_and_never_their_values(
    api: httpx.AsyncClient, tmp_path: Path,
) -> None:
    canary = "relative/canary-3f9d.sqlite"
    r = await api.put("/api/v1/practices/clinic-y", json={"name": "Y", "ledger": {"kind": KIND, "path": canary}})

    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "code": "invalid_ledger_settings",
        "message": f"Ledger kind '{KIND}' refused its settings: path: Value error, the ledger file's path must be "
                   "absolute"}
    assert "canary" not in r.text
    assert (await api.get("/api/v1/practices/clinic-y")).status_code == 404  # nothing saved


@pytest.mark.api_only
async def test_credentials_in_an_adapters_settings_go_in_auth_never_beside_it(api: httpx.AsyncClient,
                                                                             tmp_path: Path) -> None:
    r = await api.put("/api/v1/practices/clinic-y", json={"name": "Y", "ledger": {
        "kind": KIND, "path": str(tmp_path / "l.sqlite"), "token": "canary-51c2"}})

    assert r.status_code == 422, r.text
    assert "token: credentials go in auth" in r.json()["error"]["message"]
    assert "canary" not in r.text
