"""Retries and how background failures are logged."""

from __future__ import annotations

import pytest
import structlog
from pymongo.errors import ServerSelectionTimeoutError
from structlog.testing import capture_logs

from paypost.domain.errors import TransientFailure
from paypost.infra.runtime.retry import log_failure, make_retrying

log = structlog.get_logger("test")


def test_an_outage_is_one_line_without_a_traceback() -> None:
    error = ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused\nTopology Description: ...")
    with capture_logs() as logs:
        log_failure(log, "audit_seal_failed", error, lane="intake-0")
    assert logs == [{
        "event": "audit_seal_failed", "log_level": "warning", "service_unavailable": True, "lane": "intake-0",
        "error": "ServerSelectionTimeoutError: 127.0.0.1:27017: [Errno 111] Connection refused",
    }]


def test_a_bug_is_logged_with_its_traceback() -> None:
    error = KeyError("audit")
    with capture_logs() as logs:
        log_failure(log, "audit_seal_failed", error)
    assert logs == [{"event": "audit_seal_failed", "log_level": "error", "exc_info": error}]


async def test_retrying_tries_a_transient_failure_again_and_gives_up_on_anything_else() -> None:
    retrying = make_retrying(max_seconds=5, initial=0.001, max_wait=0.01)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientFailure("ledger did not answer")
        return "posted"

    assert await retrying(flaky) == "posted"
    assert calls == 3

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    calls = 0
    with pytest.raises(ValueError, match="a bug"):
        await retrying(broken)
    assert calls == 1


def test_a_write_cut_by_a_primary_stepping_down_is_transient() -> None:
    from pymongo.errors import DuplicateKeyError, WriteConcernError

    from paypost.infra.runtime.retry import is_transient

    stepped_down = WriteConcernError("operation was interrupted", 11602,
                                     {"code": 11602, "codeName": "InterruptedDueToReplStateChange"})
    assert is_transient(stepped_down)
    assert not is_transient(DuplicateKeyError("E11000", 11000))
    assert not is_transient(KeyError("x"))


async def test_the_retrying_runs_a_write_again_after_a_step_down() -> None:
    from pymongo.errors import WriteConcernError

    calls = 0

    async def claim() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise WriteConcernError("interrupted", 11602, {"code": 11602})
        return 7

    assert await make_retrying(max_seconds=5, initial=0.01)(claim) == 7
    assert calls == 2
