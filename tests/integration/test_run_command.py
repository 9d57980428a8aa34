"""`paypost run` as a user runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from paypost.local.servers import free_port
from tests.support.log_guard import watch_output
from tests.support.services import Services

pytestmark = pytest.mark.integration


def test_run_with_demo_shows_loaded_and_failed_rows_then_stops_cleanly(
    services: Services, amqp_url: str, tmp_path: Path
) -> None:
    port, system_port = free_port(), free_port()
    env = {**os.environ, "PAYPOST_AMQP_URL": amqp_url, "PAYPOST_MONGODB_URI": services.mongodb_uri,
           "PAYPOST_MONGODB_DB": f"run_{uuid.uuid4().hex[:8]}", "PAYPOST_HTTP": f"127.0.0.1:{port}",
           "PAYPOST_API_TOKENS": "t1:viewer:someone", "PAYPOST_DATA_DIR": str(tmp_path),
           "PAYPOST_DEMO_SYSTEM_PORT": str(system_port)}
    paypost = Path(sys.executable).with_name("paypost")
    proc = subprocess.Popen([str(paypost), "run", "--demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        statuses: set[str] = set()
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{base}/api/v1/postings", params={"practice_id": "demo-clinic"},
                              headers={"Authorization": "Bearer t1"}, timeout=2)
                if r.status_code == 200:
                    statuses = {row["load_status"] for row in r.json()["items"]}
                    if {"LOADED", "FAILED"} <= statuses:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert {"LOADED", "FAILED"} <= statuses
        assert httpx.get(f"{base}/readyz", timeout=5).json()["status"] == "ready"
        # The demo's second practice posts into the reference practice-management system, with OAuth2
        # (the local run made a secret key to seal its client secret): entries, a task and a flag arrive.
        system = f"http://127.0.0.1:{system_port}"
        alerts: dict[str, Any] = {"tasks": [], "flags": []}
        while time.monotonic() < deadline:
            alerts = httpx.get(f"{system}/_alerts", timeout=2).json()
            if alerts["tasks"] and alerts["flags"]:
                break
            time.sleep(0.3)
        assert [t["title"] for t in alerts["tasks"]] == [alerts["tasks"][0]["title"]]
        assert "did not load: PATIENT_NOT_FOUND" in alerts["tasks"][0]["title"]
        assert [f["patient_id"] for f in alerts["flags"]] == ["EHR-2999"]
        assert len(httpx.get(f"{system}/_entries", timeout=2).json()["items"]) == 2
        shown = httpx.get(f"{base}/api/v1/practices/demo-pms", headers={"Authorization": "Bearer t1"}, timeout=2)
        assert shown.json()["ledger"]["auth"] == {"kind": "oauth2_client_credentials",
                                                   "token_url": f"{system}/oauth/token",
                                                   "client_id": "paypost-demo", "configured": True}
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "paypost_stopped" in output
    assert "Traceback" not in output
    watch_output(output, "paypost run --demo")  # the demo's accounts and patients are in no log line


def _start(role: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    paypost = Path(sys.executable).with_name("paypost")
    proc = subprocess.Popen([str(paypost), "run", "--no-local", "--role", role],
                            env={**env, "PAYPOST_HTTP": f"127.0.0.1:{port}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def _ready(base: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "paypost exited before it was ready"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base} did not become ready")


def _consumers(amqp_url: str, queue: str) -> int:
    import asyncio

    from tests.support.upstream import queue_depth

    return asyncio.run(queue_depth(amqp_url, queue))[1]


def test_an_api_process_and_a_worker_process_split_the_work(services: Services, amqp_url: str) -> None:
    """`--role api` serves the API and consumes nothing; `--role worker` consumes and serves only
    health, readiness and metrics. Together they load a payment and show it."""
    env = {**os.environ, "PAYPOST_AMQP_URL": amqp_url, "PAYPOST_MONGODB_URI": services.mongodb_uri,
           "PAYPOST_MONGODB_DB": f"roles_{uuid.uuid4().hex[:8]}", "PAYPOST_API_TOKENS": "t1:operator:ops",
           "PAYPOST_INTAKE_LANES": "3"}
    api, api_base = _start("api", env)
    worker = None
    auth = {"Authorization": "Bearer t1"}
    try:
        _ready(api_base, api)
        assert _consumers(amqp_url, "paypost.postings") == 0  # the API process consumes nothing
        worker, worker_base = _start("worker", env)
        _ready(worker_base, worker)
        assert _consumers(amqp_url, "paypost.postings") == 3  # the worker's lanes
        assert httpx.get(f"{worker_base}/api/v1/postings", headers=auth, timeout=5).status_code == 404
        assert "paypost_payments_received_total" in httpx.get(f"{worker_base}/metrics", timeout=5).text

        practice = {"name": "Roles", "ledger": {"kind": "builtin"}, "enabled": True}
        assert httpx.put(f"{api_base}/api/v1/practices/clinic-r", json=practice, headers=auth).status_code == 200
        assert httpx.put(f"{api_base}/api/v1/practices/clinic-r/ehr-patients/EHR-1", json={},
                         headers=auth).status_code == 200
        subprocess.run([str(Path(sys.executable).with_name("paypost")), "publish", "--practice", "clinic-r",
                        "--payment", "pay-r1", "--account", "acct-r", "--amount", "12.00", "--ehr", "EHR-1"],
                       env=env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status != "LOADED":
            r = httpx.get(f"{api_base}/api/v1/postings/clinic-r/pay-r1", headers=auth, timeout=5)
            status = r.json()["load_status"] if r.status_code == 200 else None
            time.sleep(0.2)
        assert status == "LOADED"
    finally:
        outputs = []
        for proc in (api, worker):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                outputs.append(proc.communicate(timeout=45)[0])
                assert proc.returncode == 0, outputs[-1]
    assert all("Traceback" not in output for output in outputs)
