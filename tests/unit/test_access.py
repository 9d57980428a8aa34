"""Roles and scopes as plain values (domain/access.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from paypost.domain.access import ApiKey, Role, Scope, same_hash, token_hash


def test_a_scope_covers_its_practices_and_every_covers_all() -> None:
    ab = Scope.of(["clinic-a", "clinic-b"])
    assert ab.covers("clinic-a") and not ab.covers("clinic-c")
    assert Scope.of(["*"]).covers("anything") and Scope.of(["clinic-a", "*"]).every
    assert Scope.of(["*"]).includes(ab) and ab.includes(Scope.of(["clinic-b"]))
    assert not ab.includes(Scope.of(["*"])) and not ab.includes(Scope.of(["clinic-c"]))
    assert ab.names() == ["clinic-a", "clinic-b"] and Scope.of(["*"]).names() == ["*"]


def test_each_role_may_what_the_one_before_it_may() -> None:
    assert [r.may_change for r in Role] == [False, True, True]
    assert [r.may_manage_keys for r in Role] == [False, False, True]
    assert Role.ADMIN.includes(Role.OPERATOR) and not Role.OPERATOR.includes(Role.ADMIN)


def test_a_revoked_or_expired_key_is_not_usable() -> None:
    now = datetime.now(UTC)
    key = ApiKey("k", "n", Role.VIEWER, Scope.of(["*"]), now, "root", expires_at=now + timedelta(hours=1))
    assert key.usable(now)
    assert not key.usable(now + timedelta(hours=2))
    assert not ApiKey("k", "n", Role.VIEWER, Scope(), now, "root", revoked_at=now).usable(now)


def test_tokens_are_compared_by_their_hashes() -> None:
    assert same_hash(token_hash("pp_x"), token_hash("pp_x")) and not same_hash(token_hash("pp_x"), token_hash("pp_y"))
    assert len(token_hash("pp_x")) == 64
