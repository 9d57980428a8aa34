"""What paypost ships for testing code written against it: ``ledger_suite``, the Ledger port's
shared suite, for the author of a ledger adapter (README, "Ledger adapters for other systems").

It needs pytest and pytest-asyncio (paypost's ``ledger-suite`` extra); nothing in paypost's own
running code imports it.
"""

import pytest

# The suite's asserts are rewritten as a test module's are, so a failure shows both sides.
pytest.register_assert_rewrite("paypost.testing.ledger_suite")
