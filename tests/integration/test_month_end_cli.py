"""`paypost publish-deposit`, `deposits`, `aging` and `period show|close` against a running paypost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.test_cli import cli, cli_env, running, wait_output

pytestmark = pytest.mark.integration
__all__ = ["cli_env", "running"]  # the fixtures these tests use


def test_the_month_end_at_a_terminal(running: dict[str, str]) -> None:
    env = running
    wait_output(env, ["failures", "--practice", "demo-clinic"], "PATIENT_NOT_FOUND")
    bad = cli(env, "publish-deposit", "--practice", "demo-clinic", "--deposit", "D-1", "--amount", "12.345")
    assert bad.returncode == 2 and "not a valid deposit" in bad.stderr
    sent = cli(env, "publish-deposit", "--practice", "demo-clinic", "--deposit", "D-1", "--amount", "964.10")
    assert sent.returncode == 0, sent.stderr
    other = cli(env, "publish", "--message", "deposit.received", "--body",
                '{"practice_id": "demo-clinic", "deposit_id": "D-2", "amount": "5.00", "currency": "USD", '
                '"deposited_at": "2026-11-02T09:00:00+00:00"}')
    assert other.returncode == 0, other.stderr
    wait_output(env, ["deposits", "demo-clinic"], "D-2")
    listed = wait_output(env, ["deposits", "demo-clinic"], "D-1")
    assert "unmatched" in listed and "964.10" in listed
    refused = cli(env, "deposits", "demo-clinic", "--match", "D-1", "--transfer", "MT-0")
    assert refused.returncode == 2 and "--reason" in refused.stderr
    aging = cli(env, "aging", "demo-clinic")
    assert aging.returncode == 0 and "0-2" in aging.stdout and "964.10" in aging.stdout
    month = datetime.now(UTC).strftime("%Y-%m")
    shown = cli(env, "period", "show", "demo-clinic", month)
    assert shown.returncode == 0, shown.stderr
    assert "NOT ready" in shown.stdout and "failed postings" in shown.stdout and "deposits not matched" in shown.stdout
    closing = cli(env, "period", "close", "demo-clinic", month, "--note", "month end")
    assert closing.returncode == 2 and "not ready to close" in closing.stderr
    as_csv = cli(env, "period", "show", "demo-clinic", month, "--csv")
    assert as_csv.returncode == 0 and as_csv.stdout.startswith("payment_id,kind,method,amount")
    assert cli(env, "period", "show", "demo-clinic", "2026-13").returncode == 2
