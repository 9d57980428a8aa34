"""Wire formats: every message of contract sections 1.1 to 1.3 and the HTTP bodies, as pydantic v2."""

from importlib.metadata import PackageNotFoundError, version

try:
    PAYPOST_VERSION = version("paypost")  # shown in the OpenAPI and AsyncAPI documents
except PackageNotFoundError:  # run from a checkout that was never installed
    PAYPOST_VERSION = "0+unknown"
