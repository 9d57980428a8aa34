"""The audit trail's hash chain: each seal commits to the entries it covers and to the seal before it,
and is signed with a key kept outside the database (``PAYPOST_AUDIT_KEY``), so that someone who can
write to the database cannot rewrite the trail and hash the chain again unnoticed.

Plain hashing and HMAC, no storage: the seals are kept by ``infra/mongo/audit_seals.py``.
"""

from __future__ import annotations

import hashlib
import hmac
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
    records: int = 0  # access entries and purge records verified
    removed_by_retention: int = 0  # sealed entries a purge removed, each named in a signed purge record
    signed: int = 0  # seals whose signature was checked against PAYPOST_AUDIT_KEY
    unsigned_before_key: int = 0  # the first seals, made before PAYPOST_AUDIT_KEY was set
    keyed: bool = False  # whether a key was given to check signatures with
    head: tuple[int, str] | None = None  # the last seal's (seq, hash)
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


def record_hash(kind: str, record_id: str, record: Mapping[str, Any]) -> str:
    """The hash of one record sealed beside the postings' trails: an access entry (``access``) or a
    retention purge's record (``purge``). Every field but ``_id`` and the ``sealed`` mark is covered."""
    fields = {k: _plain(v) for k, v in sorted(record.items()) if k not in ("_id", "sealed")}
    canonical = json.dumps({"kind": kind, "id": record_id, "record": fields}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditKeyError(ValueError):
    """``PAYPOST_AUDIT_KEY`` is malformed (too short)."""


AUDIT_KEY_MIN = 32  # characters: 256 bits written as base64 is 44; a passphrase shorter than this is refused


class AuditKeys:
    """The keys that sign the seals (HMAC-SHA-256), from ``PAYPOST_AUDIT_KEY``: several, comma-separated,
    while rotating; the first signs, each verifies. Never stored in the database: a seal names its
    key only by ``key_id``, a keyed hash that says nothing of the key."""

    def __init__(self, text: str) -> None:
        keys = [part.strip() for part in text.split(",") if part.strip()]
        if not keys:
            raise AuditKeyError("PAYPOST_AUDIT_KEY is empty")
        for key in keys:
            if len(key) < AUDIT_KEY_MIN:
                raise AuditKeyError(f"PAYPOST_AUDIT_KEY: each key is at least {AUDIT_KEY_MIN} characters "
                                    "(openssl rand -base64 32 makes one)")
        self._keys = {self._id(k): k.encode() for k in keys}
        self.signing_id = self._id(keys[0])

    @staticmethod
    def _id(key: str) -> str:
        return hmac.new(key.encode(), b"paypost audit key id", hashlib.sha256).hexdigest()[:16]

    def sign(self, message: str) -> tuple[str, str]:
        """(key_id, signature) of ``message`` with the first key."""
        return self.signing_id, hmac.new(self._keys[self.signing_id], message.encode(), hashlib.sha256).hexdigest()

    def check(self, key_id: str | None, message: str, signature: str | None) -> bool | None:
        """True: signed by a key held here; False: a signature that does not match; None: signed
        with a key not held here (a wrong or rotated-out key)."""
        key = self._keys.get(key_id or "")
        if key is None or signature is None:
            return None
        return hmac.compare_digest(hmac.new(key, message.encode(), hashlib.sha256).hexdigest(), signature)


def seal_message(seq: int, seal_hash_: str) -> str:
    """What a seal's signature covers: its place and its hash (which covers everything before it)."""
    return f"paypost-seal:{seq}:{seal_hash_}"


def purge_message(record_id: str, digest: str) -> str:
    """What a purge record's signature covers: its id and its content's hash."""
    return f"paypost-purge:{record_id}:{digest}"


def compare_heads(exported: Iterable[Mapping[str, Any]], chain: Mapping[int, str]) -> list[str]:
    """What an export of the seals' heads (``paypost audit export``, kept elsewhere) says of the chain
    now: each exported seal still there with the same hash, and the chain no shorter than the export."""
    problems: list[str] = []
    last = max(chain, default=0)
    exported_last = 0
    for head in exported:
        seq, digest = int(head["seq"]), str(head["hash"])
        exported_last = max(exported_last, seq)
        if seq > last:
            continue
        if chain.get(seq) != digest:
            problems.append(f"seal {seq} is not the one exported (the trail was rolled back or rewritten)")
    if exported_last > last:
        problems.append(f"the trail was cut short: the export has seals up to {exported_last}, "
                        f"the database up to {last}")
    return problems
