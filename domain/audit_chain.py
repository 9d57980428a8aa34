"""The audit trail's hash chain: each seal commits to the entries it covers and to the seal before it.

Plain hashing, no storage: the seals are kept by ``infra/mongo/audit_seals.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


@dataclass
class Verification:
    """What a check of the whole chain found: seals and entries verified, entries not sealed yet, and
    every problem (an entry or seal altered or removed), in words. Filled in as the check goes."""

    seals: int = 0
    entries: int = 0
    unsealed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def entry_hash(posting_id: str, index: int, entry: Mapping[str, Any]) -> str:
    """The hash of one audit entry at its place in its posting's trail."""
    canonical = json.dumps({"posting": posting_id, "index": index,
                            "entry": {k: _plain(v) for k, v in sorted(entry.items())}},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal_hash(previous: str, seq: int, entry_hashes: Iterable[str]) -> str:
    digest = hashlib.sha256(f"{previous}:{seq}:".encode())
    for h in entry_hashes:
        digest.update(h.encode())
    return digest.hexdigest()
