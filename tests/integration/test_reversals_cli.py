"""``paypost publish`` publishes money that moves back (contract section 10) as an upstream would."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.integration.test_cli import cli, cli_env, running, wait_output

pytestmark = pytest.mark.integration
__all__ = ["cli_env", "running"]  # the fixtures this module's tests use, from the CLI's tests


def test_publish_a_payment_and_its_ach_return_from_the_command_line(running: dict[str, str],
                                                                    tmp_path: Path) -> None:
    env = running
    wait_output(env, ["postings", "--practice", "demo-clinic"], "LOADED")
    paid = cli(env, "publish", "--practice", "demo-clinic", "--payment", "CLI-PAY-1", "--account", "ACCT-1",
               "--amount", "80.00", "--ehr", "EHR-1001", "--method", "ach")
    assert paid.returncode == 0, paid.stderr
    wait_output(env, ["postings", "--practice", "demo-clinic", "--status", "LOADED"], "CLI-PAY-1")
    body = tmp_path / "return.json"
    body.write_text(json.dumps({"practice_id": "demo-clinic", "return_id": "CLI-RET-1", "payment_id": "CLI-PAY-1",
                                "amount": "80.00", "currency": "USD", "return_code": "R01", "fee_amount": "25.00"}))

    returned = cli(env, "publish", "--message", "payment.returned", "--body", f"@{body}")

    assert returned.returncode == 0, returned.stderr
    assert "published payment.returned" in returned.stdout
    rows = wait_output(env, ["postings", "--practice", "demo-clinic", "--status", "LOADED", "--csv"], "CLI-RET-1")
    [row] = [r for r in csv.DictReader(io.StringIO(rows)) if r["payment_id"] == "CLI-RET-1"]
    assert (row["kind"], row["reversed_payment_id"], row["return_code"], row["amount"]) == (
        "return", "CLI-PAY-1", "R01", "80.00")


@pytest.mark.parametrize(("args", "words"), [
    (["--message", "payment.returned", "--body", '{"practice_id": "demo-clinic"}'], "return_id"),
    (["--message", "payment.returned", "--body", "not json"], "not valid JSON"),
    (["--message", "payment.teleported", "--body", "{}"], "unknown message"),
    (["--message", "payment.voided"], "needs --body"),
    (["--practice", "demo-clinic"], "--payment"),
])
def test_publish_refuses_a_bad_message_with_a_clear_error(running: dict[str, str], args: list[str],
                                                          words: str) -> None:
    result = cli(running, "publish", *args)

    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
