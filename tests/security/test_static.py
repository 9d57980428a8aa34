"""bandit over paypost's code: no finding of medium severity or worse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_is_clean() -> None:
    bandit = str(Path(sys.executable).with_name("bandit"))
    result = subprocess.run(
        [bandit, "-q", "-r", "domain", "schemas", "consumers", "producers", "infra", "api", "paypost",
         "--severity-level", "medium", "--confidence-level", "medium"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
