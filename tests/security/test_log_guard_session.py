"""A log line naming a patient outside any test (between two tests, or after the last: a thread of
the session's, a hook) fails the whole session, also when the suite runs in pytest-xdist's workers
(the worker hands it to the controller: ``tests.support.workers``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROBE = '''
def test_passes():
    pass

def test_passes_too():
    pass
'''
# Written after each test's reports, where the tests run (a worker, under xdist): outside any test.
HOOK = '''
import logging

import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    logging.getLogger("probe").warning("after %s: acct-leak-9", item.nodeid)
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist-workers"])
def test_a_canary_outside_any_test_fails_the_session(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "conftest.py").write_text(HOOK)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.support.log_guard", "-p", "no:cacheprovider",
                          "-c", str(tmp_path / "pytest.ini"), *workers, str(tmp_path / "test_probe.py")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert "2 passed" in run.stdout, run.stdout
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "log lines naming a patient outside any test" in run.stdout
    assert "acct-leak-9" in run.stdout
