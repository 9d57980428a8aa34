"""`paypost run` processes the tests start, with their log lines read by the log guard when they
stop (contract section 12: a worker's log lines name no patient either)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from paypost.bench.load import PaypostProcess
from tests.support.log_guard import watch_output


class GuardedProcess(PaypostProcess):
    """A ``PaypostProcess`` whose output goes to a file of its own, checked for canaries at stop."""

    def __init__(self, amqp: str, mongo: str, db: str, role: str = "all") -> None:
        with tempfile.NamedTemporaryFile(prefix="paypost-process-", suffix=".log", delete=False) as file:
            output = Path(file.name)
        super().__init__(amqp, mongo, db, role, output=output)

    def stop(self) -> None:
        super().stop()
        assert self.output is not None
        if self.output.exists():
            text = self.output.read_text(errors="replace")
            self.output.unlink()
            watch_output(text, f"paypost process ({self.role})")
            _tell(text, self.role)


def _tell(text: str, role: str) -> None:
    """What the process said that a failing test's report should show (pytest prints a test's output
    only when it fails): its warnings and errors, the last 40, and its last 10 lines."""
    lines = text.splitlines()
    notable = [line for line in lines if "[warning" in line or "[error" in line or "Traceback" in line]
    told = [f"--- paypost process ({role}): {len(lines)} lines, {len(notable)} warnings or errors; the last of them:",
            *notable[-40:], "--- its last lines:", *lines[-10:]]
    print("\n".join(told))  # noqa: T201  # captured by pytest, shown with a failing test's report
