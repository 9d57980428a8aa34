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
