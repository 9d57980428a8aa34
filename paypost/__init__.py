"""paypost: every payment a practice takes, loaded into the right patient ledger."""

__version__ = "0.1.0"
