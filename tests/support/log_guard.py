"""A pytest plugin: no log line of the whole suite names a patient (contract section 12).

It watches every log line written while the suite runs, and fails the test during which a line shows
one of the canaries of ``tests.support.canaries`` (the tests' patient accounts, practice-management
patient ids and memos):

- paypost's own lines (structlog), rendered by paypost's own processors (structured tracebacks
  without locals), through a logger that looks at each rendered line before writing it;
- the standard ``logging`` module's lines (uvicorn, aio-pika, FastStream, pymongo, ...), at INFO and
  above, with libraries quieted as ``paypost run`` quiets them;
- what the test wrote to its stdout and stderr as pytest captured them, which includes the output of
  the paypost processes it started with inherited output.

A line seen outside any test (a session fixture's) fails the session. A test that must show a canary
in a log line says why with ``@pytest.mark.logs_may_name_patients(reason=...)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Generator
from typing import Any, TextIO

import pytest
import structlog

from paypost.infra.runtime.logging import QUIET, processors
from tests.support.canaries import found
from tests.support.workers import hand_over, in_worker, taken_back

_hits: list[str] = []  # "where: line" for each line that showed a canary, since the last report
_session_hits: list[str] = []


def _seen(where: str, line: str) -> None:
    if canaries := found(line):
        _hits.append(f"{where} showed {', '.join(canaries)}: {line.strip()[:400]}")


def watch_output(text: str, where: str) -> None:
    """Look at what a subprocess the test started wrote, as captured by the test (its log lines):
    a canary fails the test as one of this process's own lines would."""
    for line in text.splitlines():
        _seen(where, line)


class _GuardedLogger:
    """structlog's PrintLogger, writing to the stdout of the moment (pytest's capture), looking first."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file

    def msg(self, message: str) -> None:
        _seen("a structlog line", message)
        out = self._file or sys.stdout
        print(message, file=out, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


class _GuardedFactory:
    def __call__(self, *args: Any) -> _GuardedLogger:
        return _GuardedLogger()


class _Guard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _seen(f"a {record.name} line", self.format(record))
        except Exception:  # noqa: BLE001 - a line that cannot be formatted is logging's own error
            self.handleError(record)


_handler = _Guard(level=logging.INFO)
_factory = _GuardedFactory()


def _configure_structlog() -> None:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), *processors("console")],
        logger_factory=_factory, wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "logs_may_name_patients(reason): this test's log lines may show canary patient data")
    _configure_structlog()
    root = logging.getLogger()
    root.addHandler(_handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for name in QUIET:  # as paypost run quiets them (infra/runtime/logging.py)
        logging.getLogger(name).setLevel(logging.WARNING)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if structlog.get_config()["logger_factory"] is not _factory:  # a test configured structlog its own way
        _configure_structlog()
    _session_hits.extend(f"between tests, before {item.nodeid}: {hit}" for hit in _hits)
    _hits.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    for title, text in report.sections:
        # stdout and stderr only: the "Captured log" section shows records _Guard has seen already.
        if title.startswith(("Captured stdout", "Captured stderr")) and title.endswith(f" {report.when}"):
            for line in text.splitlines():
                _seen(title.lower().removeprefix("captured "), line)
    hits = list(dict.fromkeys(_hits))
    _hits.clear()
    if not hits or item.get_closest_marker("logs_may_name_patients"):
        return
    shown = "\n".join(hits[:20]) + (f"\n... and {len(hits) - 20} more" if len(hits) > 20 else "")
    if report.failed:
        report.sections.append(("log lines naming a patient", shown))
        return
    report.outcome = "failed"
    report.longrepr = f"log lines show canary patient data (contract section 12):\n{shown}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_hits.extend(f"after the last test: {hit}" for hit in _hits)
    _hits.clear()
    if in_worker(session.config):  # the controller fails the session (tests.support.workers)
        hand_over(session.config, "paypost_log_hits", _session_hits)
    elif _session_hits and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller
def pytest_testnodedown(node: Any, error: object) -> None:
    _session_hits.extend(taken_back(node, "paypost_log_hits"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _session_hits:
        terminalreporter.section("log lines naming a patient outside any test: each fails the session")
        for line in _session_hits[:50]:
            terminalreporter.write_line(line)
