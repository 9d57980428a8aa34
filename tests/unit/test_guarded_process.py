"""The log lines of a `paypost run` a test starts are read by the log guard when it stops."""

from __future__ import annotations

import pytest

from tests.support import log_guard
from tests.support.processes import GuardedProcess


@pytest.mark.logs_may_name_patients(reason="the guard is shown a canary on purpose, and its finding read here")
def test_a_canary_in_a_stopped_process_output_is_found() -> None:
    process = GuardedProcess("amqp://unused", "mongodb://unused", "unused")
    assert process.output is not None
    process.output.write_text('{"event": "clean line"}\n{"event": "oops", "account": "acct-canary-1"}\n')
    process.stop()  # never started: only its output is read
    assert not process.output.exists()
    found = [hit for hit in log_guard._hits if "paypost process (all)" in hit]
    assert found and "acct-canary-1" in found[0]


def test_a_clean_output_finds_nothing() -> None:
    process = GuardedProcess("amqp://unused", "mongodb://unused", "unused")
    assert process.output is not None
    process.output.write_text('{"event": "posting_loaded", "posting": "clinic-a/PAY-1"}\n')
    before = len(log_guard._hits)
    process.stop()
    assert len(log_guard._hits) == before
