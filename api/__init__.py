"""The HTTP API (contract section 3) and the operator console (section 5)."""
