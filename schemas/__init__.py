"""Wire formats: every message of contract sections 1.1 to 1.3 and the HTTP bodies, as pydantic v2."""
