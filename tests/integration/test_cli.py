"""The operator CLI against a running paypost: list failures, bulk retry and clear with a preview."""

from __future__ import annotations

import json
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

from paypost.local.servers import free_port
from tests.support.services import Services

pytestmark = pytest.mark.integration
PAYPOST = str(Path(sys.executable).with_name("paypost"))
ADMIN = "admin-t"  # an admin of every practice
OTHER = "other-t"  # an operator of another practice only


@pytest.fixture
def cli_env(services: Services, amqp_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a paypost of its own: a vhost and a database of this test."""
    http = f"127.0.0.1:{free_port()}"
    return {**os.environ, "PAYPOST_AMQP_URL": amqp_url, "PAYPOST_MONGODB_URI": services.mongodb_uri,
            "PAYPOST_MONGODB_DB": f"cli_{uuid.uuid4().hex[:8]}", "PAYPOST_HTTP": http,
            "PAYPOST_API_TOKENS": f"t:operator:ops,{ADMIN}:admin:platform,{OTHER}:operator:other:other-clinic",
            "PAYPOST_DATA_DIR": str(tmp_path), "COLUMNS": "200",
            # The office's commands are clients of the API, with a key.
            "PAYPOST_API_URL": f"http://{http}", "PAYPOST_API_KEY": "t"}


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


@pytest.fixture
def api_only(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """paypost's API alone: nothing consumes what it publishes."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.api_only"], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_output(cli_env, ["postings"], "practice")  # the API answers
        yield cli_env
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


def test_postings_as_csv_streams_the_export(running: dict[str, str]) -> None:
    import csv
    import io

    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    result = cli(env, "postings", "--practice", "demo-clinic", "--status", "FAILED", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and {r["load_status"] for r in rows} == {"FAILED"}
    assert {r["practice_id"] for r in rows} == {"demo-clinic"}
    assert "PATIENT_NOT_FOUND" in {r["load_error_code"] for r in rows}
    assert all(re.fullmatch(r"-?\d+\.\d{2}", r["amount"]) for r in rows)
    other = cli({**env, "PAYPOST_API_KEY": OTHER}, "postings", "--practice", "demo-clinic", "--csv")
    assert other.returncode == 2 and "not found" in other.stderr and other.stdout == ""


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
    # A client of the API's live feed: the broker's URL is of no use to it, the key's scope holds.
    env = {**running, "PAYPOST_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    watcher = subprocess.Popen([PAYPOST, "watch", "posting.failed.#", "--count", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = subprocess.Popen([PAYPOST, "watch", "#"], env={**env, "PAYPOST_API_KEY": OTHER},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, errors = _publish_until_it_prints(running, watcher, "W")
    finally:
        for proc in (watcher, other):
            if proc.poll() is None:
                proc.kill()
    assert watcher.returncode == 0, errors
    assert "posting.failed.demo-clinic.PATIENT_NOT_MAPPED" in out
    assert "PATIENT_NOT_MAPPED: This patient account has no practice-management patient id." in out
    assert re.match(r"\d\d:\d\d:\d\d  posting\.failed\.demo-clinic\.PATIENT_NOT_MAPPED  payment_id=W-", out), out
    other_out, other_errors = other.communicate(timeout=10)
    assert "watching http://" in other_errors and other_out == ""  # another practice's key: nothing of it


def test_watch_ends_when_its_key_is_refused(running: dict[str, str]) -> None:
    wait_output(running, ["postings"], "practice")
    refused = cli({**running, "PAYPOST_API_KEY": "nope"}, "watch")
    assert refused.returncode == 2 and "401" in refused.stderr and "Traceback" not in refused.stderr


def test_publish_refuses_bad_input_with_a_clear_error(running: dict[str, str]) -> None:
    result = cli(running, "publish", "--practice", "demo clinic", "--payment", "P", "--account", "A",
                 "--amount", "12.345")
    assert result.returncode == 2
    assert "practice_id" in result.stderr and "amount" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("action", [["retry"], ["clear", "--reason", "posted by hand"]], ids=["retry", "clear"])
def test_a_change_nothing_applies_stops_at_its_timeout_naming_what_is_pending(
        api_only: dict[str, str], action: list[str]) -> None:
    # No paypost consumes the commands in this vhost: the operation is recorded and never completes.
    cli_env = api_only
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


def test_the_office_commands_hold_the_keys_scope(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    other = {**env, "PAYPOST_API_KEY": OTHER}
    # Another practice's key sees none of demo-clinic, and cannot change it.
    assert "demo-clinic" not in cli(other, "postings").stdout
    refused = cli(other, "failures", "--practice", "demo-clinic")
    assert refused.returncode == 2 and "404" in refused.stderr
    assert "Practice demo-clinic is not set up" in refused.stderr
    retry = cli(other, "retry", "--practice", "demo-clinic", "--error-code", "PATIENT_NOT_FOUND", "--yes")
    assert retry.returncode == 2 and "404" in retry.stderr
    assert "PATIENT_NOT_FOUND" in cli(env, "failures", "--practice", "demo-clinic").stdout  # nothing applied
    for out in (refused, retry):
        assert "Traceback" not in out.stderr


def test_the_cli_explains_a_missing_unknown_or_unreachable_api(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["postings"], "practice")
    no_key = cli({**env, "PAYPOST_API_KEY": ""}, "postings")
    assert no_key.returncode == 2 and "PAYPOST_API_KEY" in no_key.stderr
    unknown = cli({**env, "PAYPOST_API_KEY": "nope"}, "postings")
    assert unknown.returncode == 2 and "401" in unknown.stderr and "revoked" in unknown.stderr
    port = free_port()
    away = cli({**env, "PAYPOST_API_URL": f"http://127.0.0.1:{port}"}, "postings")
    assert away.returncode == 1 and f"http://127.0.0.1:{port}" in away.stderr
    for out in (no_key, unknown, away):
        assert "Traceback" not in out.stderr


def test_api_keys_are_made_listed_and_revoked_from_the_cli(running: dict[str, str]) -> None:
    admin = {**running, "PAYPOST_API_KEY": ADMIN}
    wait_output(admin, ["api-keys", "list"], "key_id")
    made = cli(admin, "api-keys", "create", "--name", "demo-office", "--role", "viewer",
               "--practice", "demo-clinic", "--expires-in-days", "30")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    key_id = re.search(r"key (key_[0-9a-f]+)", made.stderr)
    assert token.startswith("pp_") and key_id, made.stderr
    office = {**running, "PAYPOST_API_KEY": token}
    wait_output(office, ["postings"], "demo-clinic")

    listed = cli(admin, "api-keys", "list").stdout
    assert key_id.group(1) in listed and "demo-office" in listed and token not in listed
    assert cli(office, "api-keys", "list").returncode == 2  # a viewer manages no keys

    revoked = cli(admin, "api-keys", "revoke", key_id.group(1))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    after = cli(office, "postings")
    assert after.returncode == 2 and "401" in after.stderr


def test_hold_and_release_a_practice_by_hand(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")  # the demo has loaded
    assert "its system answers" in cli(env, "practice", "demo-clinic").stdout

    held = cli(env, "hold", "demo-clinic", "--reason", "practice-management upgrade tonight")
    assert held.returncode == 0, held.stderr
    assert "HELD by ops since" in held.stdout and "practice-management upgrade tonight" in held.stdout
    assert "nothing is tried until released" in cli(env, "practice", "demo-clinic").stdout

    released = cli(env, "release", "demo-clinic")
    assert released.returncode == 0, released.stderr
    assert "its system answers" in released.stdout

    refused = cli(env, "hold", "nowhere", "--reason", "x")
    assert refused.returncode == 2 and "404" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("posting.failed.#", "posting.failed.clinic-a.PATIENT_NOT_MAPPED", True),
    ("posting.failed.#", "posting.failed", True),  # '#' is zero or more words
    ("posting.*.clinic-a", "posting.loaded.clinic-a", True),
    ("posting.*.clinic-a", "posting.loaded.clinic-ab", False),
    ("posting.*", "posting.loaded.clinic-a", False),  # '*' is exactly one word
    ("#", "alert.opened.clinic-a.task", True),
    ("alert.#.task", "alert.opened.clinic-a.task", True),
    ("alert.#.task", "alert.opened.clinic-a.flag", False),
])
def test_watch_matches_routing_keys_as_the_broker_binds_them(pattern: str, key: str, matches: bool) -> None:
    from paypost.cli.watch import topic_matches

    assert topic_matches(pattern, key) is matches


def test_watch_from_the_broker_for_a_dashboards_user(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["postings"], "practice")
    watcher = subprocess.Popen([PAYPOST, "watch", "--broker", "posting.failed.demo-clinic.#", "--count", "1"],
                               env={**env, "PAYPOST_API_URL": f"http://127.0.0.1:{free_port()}"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, errors = _publish_until_it_prints(env, watcher, "B")
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, errors
    assert "watching paypost.events" in errors and "posting.failed.demo-clinic.PATIENT_NOT_MAPPED" in out


def _publish_until_it_prints(env: dict[str, str], watcher: subprocess.Popen[str], prefix: str) -> tuple[str, str]:
    """Publish a failing payment every 1.5 s (up to 20 s) until ``watcher`` has printed its one event and
    exited; what it wrote to stdout and stderr."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and watcher.poll() is None:
        cli(env, "publish", "--practice", "demo-clinic", "--payment", f"{prefix}-{uuid.uuid4().hex[:6]}",
            "--account", f"ACCT-{prefix}", "--amount", "9.00")
        try:
            watcher.wait(timeout=1.5)
        except subprocess.TimeoutExpired:
            continue
    return watcher.communicate(timeout=10)


def test_access_log_shows_who_was_shown_what_to_an_admin(running: dict[str, str]) -> None:
    """`paypost access-log` (contract section 12): through the API, an admin's key only."""
    wait_output(running, ["postings", "--practice", "demo-clinic"], "demo-clinic")  # ops ("t") reads the report
    admin = {**running, "PAYPOST_API_KEY": ADMIN}
    lines = wait_output(admin, ["access-log", "--practice", "demo-clinic", "--json"], '"route": "/api/v1/postings"')
    entries = [json.loads(line) for line in lines.splitlines() if line.strip()]
    listed = next(e for e in entries if e["route"] == "/api/v1/postings")
    assert (listed["key_name"], listed["role"], listed["action"], listed["client"]) == \
        ("ops", "operator", "read", "127.0.0.1")
    assert listed["count"] == len(listed["payment_ids"]) > 0
    table = cli(admin, "access-log", "--practice", "demo-clinic", "--limit", "5")
    assert table.returncode == 0 and "/api/v1/postings" in table.stdout and "ops" in table.stdout
    refused = cli(running, "access-log")  # an operator's key
    assert refused.returncode == 2 and "403" in refused.stderr


@pytest.mark.parametrize(("args", "path", "key"), [
    (["deposits", "demo-clinic"], "/practices/demo-clinic/deposits", "t"),
    (["deposits", "demo-clinic", "--status", "unmatched"], "/practices/demo-clinic/deposits?status=unmatched", "t"),
    (["aging", "demo-clinic"], "/practices/demo-clinic/aging", "t"),
    (["period", "show", "demo-clinic", "2026-12"], "/practices/demo-clinic/periods/2026-12", "t"),
    (["practice", "demo-clinic"], "/practices/demo-clinic", "t"),
    (["api-keys", "list"], "/api-keys", ADMIN),
    (["failures", "--practice", "demo-clinic"], "/postings?practice_id=demo-clinic&status=FAILED&limit=50", "t"),
])
def test_each_listing_prints_the_apis_answer_with_json(running: dict[str, str], args: list[str], path: str,
                                                       key: str) -> None:
    """`--json` (issue 30): the rows the API answers, as one JSON document on stdout, nothing else there."""
    import httpx

    env = {**running, "PAYPOST_API_KEY": key}
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")  # the demo has loaded
    done = cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # one document, nothing around it
    answer = httpx.get(f"{env['PAYPOST_API_URL']}/api/v1{path}", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert printed == answer.json()
    assert printed  # a page or a record, never an empty answer
    table = cli(env, *args)
    assert table.returncode == 0 and table.stdout != done.stdout  # without --json: the table, as before


def test_json_listings_refuse_as_the_tables_do(running: dict[str, str]) -> None:
    other = {**running, "PAYPOST_API_KEY": OTHER}
    wait_output(running, ["postings"], "practice")
    for args in (["deposits", "demo-clinic"], ["aging", "demo-clinic"], ["api-keys", "list"]):
        refused = cli(other, *args, "--json")
        assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr, args
