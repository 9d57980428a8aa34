"""Random ids, made fast: a payment's load makes two (its ledger entry's and its event's)."""

from __future__ import annotations

import os

_POOL_BYTES = 4096


class _Pool:
    """The operating system's random bytes, drawn 4 KiB at a time rather than 16 bytes a call.
    Taken from one thread only (the event loop's: a payment's ledger entry and event are made there);
    two threads taking at once could be handed the same bytes."""

    def __init__(self) -> None:
        self.refill()

    def refill(self) -> None:
        self.bytes, self.at = os.urandom(_POOL_BYTES), 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.bytes):
            self.refill()
        taken = self.bytes[self.at:self.at + n]
        self.at += n
        return taken


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.refill)  # a forked child never repeats its parent's ids


def uuid4_text() -> str:
    """A random UUID (version 4) as text, as ``str(uuid.uuid4())`` writes one."""
    digits = _pool.take(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"
