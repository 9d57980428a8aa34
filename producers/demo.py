"""A demo: a practice, some patients, and a mix of payments that load and payments that fail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from paypost.domain.ports.demo import DemoPractices, DemoSetup
from paypost.domain.ports.events import Publish
from paypost.producers.upstream import new_payment, new_refund, publish_payment, publish_refund

DEMO_PRACTICE = "demo-clinic"



@dataclass(frozen=True)
class DemoRun:
    practice_id: str
    published: int
    expect_loaded: int
    expect_failed: int


async def run_demo(publish: Publish, practices: DemoPractices, practice_id: str = DEMO_PRACTICE) -> DemoRun:
    """Set up a practice with the built-in ledger and publish payments, some of which fail.

    Loads: payments for registered patients, and one refund. Fails: a patient account with no
    practice-management id (PATIENT_NOT_MAPPED), an id the ledger does not know
    (PATIENT_NOT_FOUND), and a practice with no integration (INTEGRATION_NOT_CONFIGURED).
    """
    await practices.put(practice_id, "Demo Clinic", {"kind": "builtin"}, True)
    for ehr in ("EHR-1001", "EHR-1002", "EHR-1003"):
        await practices.register_patient(practice_id, ehr)
    run = uuid.uuid4().hex[:6]
    transfer = f"MT-{run}"
    loaded = [
        new_payment(practice_id, f"PAY-{run}-1", "ACCT-1", "125.00", ehr_patient_id="EHR-1001",
                    merchant_transfer_id=transfer),
        new_payment(practice_id, f"PAY-{run}-2", "ACCT-2", "40.00", ehr_patient_id="EHR-1002", method="hsa",
                    merchant_transfer_id=transfer),
        new_payment(practice_id, f"PAY-{run}-3", "ACCT-3", "60.50", ehr_patient_id="EHR-1003", method="ach",
                    merchant_transfer_id=transfer),
        new_payment(practice_id, f"PAY-{run}-4", "ACCT-1", "20.00", ehr_patient_id="EHR-1001", method="cash"),
    ]
    failing = [
        new_payment(practice_id, f"PAY-{run}-5", "ACCT-9", "75.00", merchant_transfer_id=transfer),
        new_payment(practice_id, f"PAY-{run}-6", "ACCT-9", "15.00"),
        new_payment(practice_id, f"PAY-{run}-7", "ACCT-7", "33.00", ehr_patient_id="EHR-7777"),
        new_payment("demo-no-ledger", f"PAY-{run}-8", "ACCT-1", "10.00", ehr_patient_id="EHR-1001"),
    ]
    for payment in loaded + failing:
        await publish_payment(publish, payment)
    # The refund follows its payment: published last, after the payments it refers to.
    await publish_refund(publish, new_refund(practice_id, f"REF-{run}-1", f"PAY-{run}-1", "25.00"))
    return DemoRun(practice_id, len(loaded) + len(failing) + 1, len(loaded) + 1, len(failing))


DEMO_SYSTEM_PRACTICE = "demo-pms"
DEMO_SYSTEM_PATIENTS = ("EHR-2001", "EHR-2002")
# What the demo's system shows the office of its patients, for the search (contract section 14): made-up
# people. ACCT-29's mapping names EHR-2999, which the system does not know: searching "Example" finds
# EHR-2009, the patient it should have named, and entering it retries the payment.
DEMO_SYSTEM_DISPLAYS = {"EHR-2001": "Avery Example, born 1979-03-14", "EHR-2002": "Blair Sample, born 1990-11-02",
                        "EHR-2009": "Rosa Example, born 1984-02-11"}



async def run_system_demo(publish: Publish, setup: DemoSetup, ledger: dict[str, object],
                          practice_id: str = DEMO_SYSTEM_PRACTICE) -> DemoRun:
    """A practice whose ledger is a practice-management system (the reference one, with OAuth2):
    two payments load into it, one fails (its patient is unknown there) and opens an office task
    and a patient flag in it."""
    await setup.practice(practice_id, "Demo Clinic on its practice-management system", ledger)
    await setup.mapping(practice_id, "ACCT-29", "EHR-2999")  # a patient the system does not know
    run = uuid.uuid4().hex[:6]
    payments = [
        new_payment(practice_id, f"PAY-{run}-21", "ACCT-21", "95.00", ehr_patient_id=DEMO_SYSTEM_PATIENTS[0]),
        new_payment(practice_id, f"PAY-{run}-22", "ACCT-22", "30.00", ehr_patient_id=DEMO_SYSTEM_PATIENTS[1],
                    method="hsa"),
        new_payment(practice_id, f"PAY-{run}-29", "ACCT-29", "55.00"),
    ]
    for payment in payments:
        await publish_payment(publish, payment)
    return DemoRun(practice_id, len(payments), 2, 1)
