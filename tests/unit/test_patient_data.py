"""The rules of contract section 12 that need no service: the access entry's shape, the seals' keys,
and what an export of the seals' heads says of a chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from paypost.domain.access import Principal, Role, Scope
from paypost.domain.access_trail import LISTED_IDS_MAX, AccessEntry, AccessQuery, Retention, Via, access_entry
from paypost.domain.audit_chain import AuditKeyError, AuditKeys, compare_heads, record_hash
from paypost.handlers.access_trail import AccessTrail
from paypost.infra.runtime.settings import Settings

WHO = Principal("ann", Role.OPERATOR, Scope.of(["clinic-a"]), key_id="key_1")
AT = datetime(2026, 12, 6, tzinfo=UTC)
KEY_A = "a" * 32
KEY_B = "b" * 44


def test_an_entry_lists_the_ids_shown_up_to_500_then_its_filters_and_count() -> None:
    few = access_entry(WHO, Via("10.0.0.9", "/api/v1/postings"), "read", AT, practice_id="clinic-a",
                       payment_ids=["p1", "p2"], patient_account_ids={"acct-1"})
    assert (few.payment_ids, few.count, few.filters, few.patient_account_ids) == (("p1", "p2"), 2, None, ("acct-1",))
    assert (few.key_id, few.key_name, few.role, few.client) == ("key_1", "ann", "operator", "10.0.0.9")
    ids = [f"p{n}" for n in range(LISTED_IDS_MAX)]
    assert access_entry(WHO, Via(), "export", AT, practice_id="clinic-a", payment_ids=ids).payment_ids == tuple(ids)
    many = access_entry(WHO, Via(), "export", AT, practice_id="clinic-a", payment_ids=ids[:10],
                        count=LISTED_IDS_MAX + 1, filters={"status": "FAILED"})
    assert (many.payment_ids, many.count, many.filters) == (None, 501, {"status": "FAILED"})


def test_the_audit_key_signs_and_checks_and_a_rotation_keeps_the_old_key_for_checking() -> None:
    with pytest.raises(AuditKeyError, match="at least 32"):
        AuditKeys("too-short")
    with pytest.raises(AuditKeyError, match="empty"):
        AuditKeys(" , ")
    old = AuditKeys(KEY_A)
    key_id, signature = old.sign("paypost-seal:1:abc")
    assert KEY_A not in key_id and KEY_A not in signature
    assert old.check(key_id, "paypost-seal:1:abc", signature) is True
    assert old.check(key_id, "paypost-seal:1:abd", signature) is False  # another message
    assert AuditKeys(KEY_B).check(key_id, "paypost-seal:1:abc", signature) is None  # a key not held
    rotated = AuditKeys(f"{KEY_B},{KEY_A}")
    assert rotated.signing_id == AuditKeys(KEY_B).signing_id
    assert rotated.check(key_id, "paypost-seal:1:abc", signature) is True


def test_an_export_of_the_heads_finds_a_chain_cut_short_or_rolled_back() -> None:
    chain = {1: "h1", 2: "h2", 3: "h3"}
    assert compare_heads([{"seq": 1, "hash": "h1"}, {"seq": 2, "hash": "h2"}], chain) == []
    assert compare_heads([{"seq": 2, "hash": "other"}], chain) == \
        ["seal 2 is not the one exported (the trail was rolled back or rewritten)"]
    assert compare_heads([{"seq": 4, "hash": "h4"}], chain) == \
        ["the trail was cut short: the export has seals up to 4, the database up to 3"]


def test_a_records_hash_covers_its_fields_but_not_its_sealed_mark() -> None:
    record = {"_id": "x", "at": AT, "key_name": "ann", "sealed": False}
    assert record_hash("access", "x", record) == record_hash("access", "x", {**record, "sealed": True})
    assert record_hash("access", "x", record) != record_hash("access", "x", {**record, "key_name": "bob"})
    assert record_hash("access", "x", record) != record_hash("purge", "x", record)


def test_retention_cutoffs() -> None:
    postings, messages = Retention().cutoffs(AT)
    assert (AT - postings).days == 2557 and (AT - messages).days == 30


def test_the_audit_key_and_the_trusted_proxies_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "audit-key"
    key_file.write_text(KEY_B + "\n")
    monkeypatch.setenv("PAYPOST_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.setenv("PAYPOST_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    settings = Settings()
    assert settings.audit_keys is not None and settings.audit_keys.signing_id == AuditKeys(KEY_B).signing_id
    assert [str(n) for n in settings.proxies] == ["10.0.0.0/8", "192.0.2.1/32"]
    assert Settings(audit_key=SecretStr("")).audit_keys is None
    monkeypatch.setenv("PAYPOST_TRUSTED_PROXIES", "10.0.0.0/8,not-a-net")
    with pytest.raises(ValueError, match="'not-a-net' is not an address or a CIDR"):
        Settings()
    monkeypatch.delenv("PAYPOST_TRUSTED_PROXIES")
    with pytest.raises(ValueError, match="at least 32 characters") as refused:
        Settings(audit_key=SecretStr("tiny-key-value"))
    assert "tiny-key-value" not in str(refused.value)  # a setting's error never shows the secret


class Kept:
    """The access trail's port, keeping what it is given (the MongoDB adapter is tested in
    tests/integration/test_access_trail.py)."""

    def __init__(self) -> None:
        self.entries: list[AccessEntry] = []

    def record(self, entry: AccessEntry) -> None:
        self.entries.append(entry)

    async def page(self, query: AccessQuery, scope: Scope, limit: int,
                   cursor: str | None) -> tuple[list[dict[str, object]], str | None]:
        return [], None


def test_an_answer_across_practices_is_one_entry_each_and_a_search_keeps_only_its_count() -> None:
    kept = Kept()
    trail = AccessTrail(kept, clock=lambda: AT)
    via = Via("10.0.0.9", "/api/v1/postings")
    rows = [{"practice_id": "clinic-a", "payment_id": "p1", "patient_account_id": "acct-1"},
            {"practice_id": "clinic-b", "payment_id": "p2", "patient_account_id": "acct-2"},
            {"practice_id": "clinic-a", "payment_id": "p3", "patient_account_id": "acct-1"}]
    trail.shown(WHO, via, "read", rows, None, {"status": "LOADED"})
    by_practice = {e.practice_id: e for e in kept.entries}
    assert set(by_practice) == {"clinic-a", "clinic-b"}
    assert (by_practice["clinic-a"].payment_ids, by_practice["clinic-a"].patient_account_ids) == \
        (("p1", "p3"), ("acct-1",))
    assert by_practice["clinic-b"].count == 1 and by_practice["clinic-b"].filters == {"status": "LOADED"}

    kept.entries.clear()
    trail.shown(WHO, via, "search", [{} for _ in range(7)], "clinic-a", {"practice_id": "clinic-a"})
    [search] = kept.entries
    assert (search.action, search.count, search.payment_ids, search.practice_id) == ("search", 7, (), "clinic-a")


async def test_an_export_is_recorded_once_it_ends_even_when_cut_off() -> None:
    kept = Kept()
    trail = AccessTrail(kept, clock=lambda: AT)

    async def rows() -> AsyncIterator[dict[str, object]]:
        for n in range(5):
            yield {"practice_id": "clinic-a", "payment_id": f"p{n}"}

    stream = trail.exported(WHO, Via(), rows(), "clinic-a", {"practice_id": "clinic-a"})
    taken = [await anext(stream), await anext(stream)]
    assert len(taken) == 2 and kept.entries == []  # nothing recorded while it streams
    await stream.aclose()  # the client went away after two rows
    [entry] = kept.entries
    assert (entry.action, entry.count, entry.payment_ids) == ("export", 2, ("p0", "p1"))
