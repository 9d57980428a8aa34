"""The Load Errors of contract section 2, with the words the office reads."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LoadErrorCode(enum.StrEnum):
    """Why a posting did not load."""

    PATIENT_NOT_MAPPED = "PATIENT_NOT_MAPPED"
    PATIENT_NOT_FOUND = "PATIENT_NOT_FOUND"
    INTEGRATION_NOT_CONFIGURED = "INTEGRATION_NOT_CONFIGURED"
    LEDGER_REJECTED = "LEDGER_REJECTED"
    LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"
    ORIGINAL_PAYMENT_NOT_LOADED = "ORIGINAL_PAYMENT_NOT_LOADED"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    REVERSAL_EXCEEDS_PAYMENT = "REVERSAL_EXCEEDS_PAYMENT"
    UNSUPPORTED_SCHEMA_VERSION = "UNSUPPORTED_SCHEMA_VERSION"


@dataclass(frozen=True, slots=True)
class LoadError:
    """A Load Error as the report shows it: code, plain-language message, and what fixes it."""

    code: LoadErrorCode
    message: str
    fix: str


_MESSAGES: dict[LoadErrorCode, tuple[str, str]] = {
    LoadErrorCode.PATIENT_NOT_MAPPED: (
        "This patient account has no practice-management patient id.",
        ("Enter the patient's practice-management id (the mapping); paypost then retries "
         "this patient's failed payments by itself."),
    ),
    LoadErrorCode.PATIENT_NOT_FOUND: (
        "The mapped practice-management patient id does not exist in the ledger.",
        "Correct the patient's mapping; paypost then retries by itself.",
    ),
    LoadErrorCode.INTEGRATION_NOT_CONFIGURED: (
        "This practice has no enabled ledger integration.",
        "Set up and enable the practice's ledger integration, then retry.",
    ),
    LoadErrorCode.LEDGER_REJECTED: (
        "The ledger refused the entry.",
        "Correct the cause the ledger gave, then retry; or clear it if posted by hand.",
    ),
    LoadErrorCode.LEDGER_UNAVAILABLE: (
        "The ledger kept failing after automatic retries.",
        "Retry later.",
    ),
    LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED: (
        "This refund's or reversal's original payment is not loaded.",
        "Load or clear the original payment, then retry the refund.",
    ),
    LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT: (
        "Refunds and reversals of this payment together would take back more than the payment.",
        "Check the payment in the payments platform; clear this once it is reviewed.",
    ),
    LoadErrorCode.INVALID_MESSAGE: (
        "The message is not valid JSON or breaks the paypost contract.",
        "Fix the publisher; clear this row once reviewed.",
    ),
    LoadErrorCode.UNSUPPORTED_SCHEMA_VERSION: (
        "The message's schema_version is not one paypost reads.",
        "Upgrade paypost or the publisher.",
    ),
}

def base_message(code: LoadErrorCode) -> str:
    """The plain words of ``code`` alone, before any detail ``load_error`` appends."""
    return _MESSAGES[code][0]


def load_error(code: LoadErrorCode, detail: str | None = None) -> LoadError:
    """Build the Load Error for ``code``; ``detail`` (never patient detail) is appended."""
    message, fix = _MESSAGES[code]
    if detail:
        message = f"{message} {detail}"
    return LoadError(code=code, message=message, fix=fix)
