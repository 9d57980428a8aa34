"""The operator CLI against a running paypost: list failures, bulk retry and clear with a preview."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local_services import free_port
from tests.support.services import Services

pytestmark = pytest.mark.integration
PAYPOST = str(Path(sys.executable).with_name("paypost"))


@pytest.fixture
def cli_env(services: Services, amqp_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a paypost of its own: a vhost and a database of this test."""
    return {**os.environ, "PAYPOST_AMQP_URL": amqp_url, "PAYPOST_MONGODB_URI": services.mongodb_uri,
            "PAYPOST_MONGODB_DB": f"cli_{uuid.uuid4().hex[:8]}", "PAYPOST_HTTP": f"127.0.0.1:{free_port()}",
            "PAYPOST_API_TOKENS": "t:operator:ops", "PAYPOST_DATA_DIR": str(tmp_path), "COLUMNS": "200"}


@pytest.fixture
def running(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = cli_env
    proc = subprocess.Popen([PAYPOST, "run", "--demo", "--no-local"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def cli(env: dict[str, str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PAYPOST, *args], env=env, capture_output=True, text=True, input=input, timeout=60,
                          check=False)


def wait_output(env: dict[str, str], args: list[str], needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = cli(env, *args).stdout
        if needle in out:
            return out
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} not in output of {args}:\n{out}")


def test_bulk_clear_by_error_code_with_preview(running: dict[str, str]) -> None:
    env = running
    failures = wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    assert "PATIENT_NOT_MAPPED" in failures

    preview = cli(env, "clear", "--practice", "demo-clinic", "--error-code", "PATIENT_NOT_MAPPED",
                  "--reason", "posted by hand", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "Would clear 2 posting(s)" in preview.stdout
    assert "PATIENT_NOT_MAPPED" in cli(env, "failures", "--practice", "demo-clinic").stdout  # nothing applied

    declined = cli(env, "clear", "--practice", "demo-clinic", "--error-code", "PATIENT_NOT_MAPPED",
                   "--reason", "posted by hand", input="n\n")
    assert "nothing applied" in declined.stdout

    applied = cli(env, "clear", "--practice", "demo-clinic", "--error-code", "PATIENT_NOT_MAPPED",
                  "--reason", "posted by hand", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "2 cleared" in applied.stdout
    after = cli(env, "failures", "--practice", "demo-clinic").stdout
    assert "PATIENT_NOT_MAPPED" not in after and "PATIENT_NOT_FOUND" in after
    assert "CLEARED" in cli(env, "postings", "--practice", "demo-clinic", "--status", "CLEARED").stdout


def test_retry_reports_each_item_and_refuses_bad_input(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    result = cli(env, "retry", "--practice", "demo-clinic", "--error-code", "PATIENT_NOT_FOUND", "--yes")
    assert result.returncode == 0, result.stderr
    assert "1 retried" in result.stdout

    no_selection = cli(env, "retry", "--practice", "demo-clinic")
    assert no_selection.returncode == 2 and "name payment ids" in no_selection.stderr
    bad_code = cli(env, "retry", "--practice", "demo-clinic", "--error-code", "NOPE")
    assert bad_code.returncode == 2 and "unknown Load Error" in bad_code.stderr
    empty_reason = cli(env, "clear", "--practice", "demo-clinic", "--reason", " ", "X")
    assert empty_reason.returncode == 2 and "needs a reason" in empty_reason.stderr
    for out in (no_selection, bad_code, empty_reason):
        assert "Traceback" not in out.stderr


def test_watch_prints_a_live_feed_of_failures(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    watcher = subprocess.Popen([PAYPOST, "watch", "posting.failed.#", "--count", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and watcher.poll() is None:
            cli(env, "publish", "--practice", "demo-clinic", "--payment", f"W-{uuid.uuid4().hex[:6]}",
                "--account", "ACCT-W", "--amount", "9.00")
            try:
                watcher.wait(timeout=1.5)
            except subprocess.TimeoutExpired:
                continue
        out, errors = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, errors
    assert "posting.failed.demo-clinic.PATIENT_NOT_MAPPED" in out
    assert "PATIENT_NOT_MAPPED: This patient account has no practice-management patient id." in out


def test_publish_refuses_bad_input_with_a_clear_error(running: dict[str, str]) -> None:
    result = cli(running, "publish", "--practice", "demo clinic", "--payment", "P", "--account", "A",
                 "--amount", "12.345")
    assert result.returncode == 2
    assert "practice_id" in result.stderr and "amount" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("action", [["retry"], ["clear", "--reason", "posted by hand"]], ids=["retry", "clear"])
def test_a_change_nothing_applies_stops_at_its_timeout_naming_what_is_pending(
        cli_env: dict[str, str], action: list[str]) -> None:
    # No paypost consumes the commands in this vhost: the operation is recorded and never completes.
    ids = [f"PAY-{i}" for i in range(8)]
    try:
        result = subprocess.run([PAYPOST, *action, "--practice", "demo-clinic", *ids, "--yes", "--timeout", "2"],
                                env=cli_env, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"paypost {action[0]} was still waiting for its operation after {exc.timeout:.0f} s")
    assert result.returncode == 3, result.stdout + result.stderr
    found = re.search(r"operation ([0-9a-f-]{36})", result.stdout)
    assert found, result.stdout
    operation_id = found.group(1)
    assert (f"operation {operation_id} did not complete within 2 s: 0 of 8 done; "
            f"8 still pending: PAY-0, PAY-1, PAY-2, PAY-3, PAY-4 and 3 more") in result.stderr
    assert f"GET /api/v1/operations/{operation_id}" in result.stderr
