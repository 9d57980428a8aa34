"""Wire formats: every message of contract sections 1.1 to 1.3 and the HTTP bodies, as pydantic v2."""

from paypost import __version__

# Shown in the OpenAPI and AsyncAPI documents and by /healthz: pyproject.toml's version, read once
# (paypost.__version__).
PAYPOST_VERSION = __version__
