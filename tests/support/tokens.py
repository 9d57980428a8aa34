"""The API tokens every test's paypost knows (PAYPOST_API_TOKENS of the ``settings`` fixture)."""

from __future__ import annotations

OPERATOR = "op-token"
VIEWER = "view-token"
TOKENS = f"{OPERATOR}:operator:alice,{VIEWER}:viewer:victor,op2-token:operator:bob"
