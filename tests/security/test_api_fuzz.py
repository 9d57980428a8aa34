"""Schemathesis against paypost's own OpenAPI document: no input may cause a server error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from paypost.bench.load import TOKEN
from tests.support.processes import GuardedProcess
from tests.support.services import Services

pytestmark = pytest.mark.integration


async def test_schemathesis_finds_no_server_error(services: Services, amqp_url: str) -> None:
    worker = GuardedProcess(amqp_url, services.mongodb_uri, f"fuzz_{uuid.uuid4().hex[:8]}")
    await worker.start()
    try:
        schemathesis = str(Path(sys.executable).with_name("schemathesis"))
        result = await asyncio.to_thread(
            subprocess.run,
            [schemathesis, "run", f"{worker.base}/api/v1/openapi.json",
             "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {TOKEN}",
             "--max-examples", "25", "--seed", "7", "--request-timeout", "10",
             "--exclude-path", "/api/v1/events/stream",
             # A practice on the built-in ledger answers a patient search with its documented 501
             # (contract section 14), which this check counts as a server error; the search is
             # tested in tests/integration/test_patient_search.py and left out of
             # tests/integration/test_schemathesis.py for the same reason.
             "--exclude-path", "/api/v1/practices/{practice_id}/patient-search"],
            capture_output=True, text=True, timeout=900, check=False,
        )
    finally:
        worker.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
