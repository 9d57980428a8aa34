"""paypost: every payment a practice takes, loaded into the right patient ledger."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml's version, the only place it is written, as the installed package carries it.
    __version__ = version("paypost")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
