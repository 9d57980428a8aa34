"""Canary patient data: the values the tests' payload builders put where a patient's data goes, and the
patterns that find them (contract section 12: no log line names a patient).

Every patient account of the tests is ``acct-...`` and every practice-management patient id
``EHR-...``; every payment the builders make carries ``MEMO``. ``tests.support.log_guard`` fails a
test whose log lines show any of them.
"""

from __future__ import annotations

import re

ACCOUNT = "acct-1"  # the builders' patient account
PATIENT = "EHR-1"  # the builders' practice-management patient id
MEMO = "Zelda Canaryperson DOB 1961-07-04"  # the builders' memo: a name and a date of birth
# What a practice's system says back when it refuses an entry, quoting the patient.
SYSTEM_TEXT = "Patient Zelda Canaryperson (DOB 1961-07-04) has an account on hold"

# The demo's accounts are ACCT-1, ACCT-2...: any case.
PATTERNS = re.compile(r"\b(?i:acct)-[A-Za-z0-9][\w-]*|\bEHR-[A-Za-z0-9][\w-]*|Canaryperson|1961-07-04")


def found(text: str) -> list[str]:
    """The canaries ``text`` shows, each once."""
    return sorted({m.group(0) for m in PATTERNS.finditer(text)})
