"""``patient_ref``: how a log line tells two patients apart without naming either (contract section 12).

A keyed hash (HMAC-SHA-256) of the practice and the patient account: the same account of the same
practice gives the same ref, and nobody without the key can tell which account a ref stands for, nor
test a guess. The key is derived from the platform's secret key (``PAYPOST_SECRET_KEY``) when paypost
starts (``use_key``); without one, each process draws a random key, so refs still name no patient but
differ between processes and restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_key: bytes = secrets.token_bytes(32)


def use_key(key: bytes) -> None:
    """Key every ref from now on with ``key`` (32 or more bytes, derived from the platform's secret key)."""
    global _key  # noqa: PLW0603 - one key per process, set once at start, read by every log line
    if len(key) < 32:
        raise ValueError("a patient_ref key holds at least 32 bytes")
    _key = key


def patient_ref(practice_id: str, patient_account_id: str) -> str:
    """The ref of ``patient_account_id`` at ``practice_id``: ``pr_`` and 16 hex digits (64 bits)."""
    digest = hmac.new(_key, f"{practice_id}\x00{patient_account_id}".encode(), hashlib.sha256).hexdigest()
    return f"pr_{digest[:16]}"
