"""The audit trail's hash chain: each seal commits to the entries it covers and to the seal before it.

Plain hashing, no storage: the seals are kept by ``infra/audit_seals.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


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
