"""With PAYPOST_TESTS_NO_SKIP=1 (as .ci/run sets it) a skipped test fails the session, naming the test
and why it skipped; ``@pytest.mark.may_skip(reason=...)`` lets a test skip on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROBE = '''
import pytest

def test_missing_tool():
    pytest.skip("openssl is not installed")

@pytest.mark.skipif(True, reason="needs rabbitmq-server")
def test_missing_server():
    pass

@pytest.mark.may_skip(reason="only on another platform")
def test_meant_to_skip():
    pytest.skip("not this platform")

def test_passes():
    pass
'''


# The suite runs in pytest-xdist's workers (pyproject.toml's addopts): a skip fails the session there too.
IN_WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist-workers"])


def _run(tmp_path: Path, no_skip: str | None, probe: str = PROBE,
         workers: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(probe)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k != "PAYPOST_TESTS_NO_SKIP"}
    if no_skip is not None:
        env["PAYPOST_TESTS_NO_SKIP"] = no_skip
    # tests/conftest.py as a plugin: its hooks, over a probe of its own
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-c", str(tmp_path / "pytest.ini"), *(workers or []), str(tmp_path / "test_probe.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


@IN_WORKERS
def test_a_skip_fails_the_session_naming_the_test_and_its_reason(tmp_path: Path, workers: list[str]) -> None:
    run = _run(tmp_path, "1", workers=workers)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "test_probe.py::test_missing_tool: openssl is not installed" in run.stdout
    assert "test_probe.py::test_missing_server: needs rabbitmq-server" in run.stdout
    assert "test_meant_to_skip" not in run.stdout.split("each fails the session")[1]  # marked: it may skip


@IN_WORKERS
def test_a_module_skipped_whole_fails_the_session_too(tmp_path: Path, workers: list[str]) -> None:
    run = _run(tmp_path, "1", 'import pytest\npytest.skip("no chromium", allow_module_level=True)\n', workers)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "test_probe.py: no chromium" in run.stdout


def test_without_the_variable_skips_are_skips(tmp_path: Path) -> None:
    run = _run(tmp_path, None)
    assert run.returncode == pytest.ExitCode.OK, run.stdout
    assert "1 passed, 3 skipped" in run.stdout
