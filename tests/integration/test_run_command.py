"""`paypost run` as a user runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from infra.local_services import free_port
from tests.support.services import Services

pytestmark = pytest.mark.integration


def test_run_with_demo_shows_loaded_and_failed_rows_then_stops_cleanly(
    services: Services, amqp_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "PAYPOST_AMQP_URL": amqp_url, "PAYPOST_MONGODB_URI": services.mongodb_uri,
           "PAYPOST_MONGODB_DB": f"run_{uuid.uuid4().hex[:8]}", "PAYPOST_HTTP": f"127.0.0.1:{port}",
           "PAYPOST_API_TOKENS": "t1:viewer:someone", "PAYPOST_DATA_DIR": str(tmp_path)}
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
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "paypost_stopped" in output
    assert "Traceback" not in output
