"""The audit chain anchored outside the database (contract section 12): seals signed with
PAYPOST_AUDIT_KEY, `paypost audit export`, and `paypost audit verify` catching a trail rewritten and
hashed again, a wrong key, and (given an export) a trail cut short or rolled back. Every attack here
writes to the database directly, with pymongo, as someone holding its credentials would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paypost.domain.audit_chain import GENESIS, AuditKeys, entry_hash, seal_hash
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.mongo.database import Collections
from paypost.infra.runtime.settings import Settings
from tests.integration.test_audit_chain import loaded_posting

pytestmark = pytest.mark.integration

KEY = "anchor-test-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
NEW_KEY = "anchor-test-key-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
PAYPOST = str(Path(sys.executable).with_name("paypost"))



def cli(settings: Settings, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAYPOST_MONGODB_URI": settings.mongodb_uri, "PAYPOST_MONGODB_DB": settings.mongodb_db,
           "PAYPOST_AUDIT_KEY": key, "COLUMNS": "200"}
    return subprocess.run([PAYPOST, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


async def sealed_postings(collections: Collections, keys: AuditKeys, first: int, count: int) -> list[str]:
    """``count`` settled postings, each sealed in a seal of its own."""
    ids = []
    for n in range(first, first + count):
        ids.append(await loaded_posting(collections, n))
        await AuditSealer(collections, keys).seal_all()
    return ids


async def rewrite_and_rehash(collections: Collections, posting_id: str) -> None:
    """What someone with write access but not the key can do: change an entry, then recompute every
    hash after it so that the unkeyed chain is whole again."""
    await collections.postings.update_one({"_id": posting_id}, {"$set": {"audit.1.actor": "mallory"}})
    doc = await collections.postings.find_one({"_id": posting_id})
    assert doc is not None
    seals = collections.db.get_collection("audit_seals")
    previous = GENESIS
    async for seal in seals.find({}).sort("seq", 1):
        entries = [{**c, "hash": entry_hash(posting_id, c["index"], doc["audit"][c["index"]])}
                   if c["posting"] == posting_id else c for c in seal["entries"]]
        digest = seal_hash(previous, seal["seq"], [c["hash"] for c in entries])
        await seals.update_one({"_id": seal["_id"]}, {"$set": {"entries": entries, "previous": previous,
                                                               "hash": digest}})
        previous = digest


async def test_a_trail_rewritten_and_hashed_again_is_caught_by_the_seals_signatures(
    settings: Settings, collections: Collections,
) -> None:
    keys = AuditKeys(KEY)
    ids = await sealed_postings(collections, keys, 1, 4)
    whole = await AuditSealer(collections, keys).verify()
    assert whole.ok and whole.signed == whole.seals == 4, whole.problems

    await rewrite_and_rehash(collections, ids[1])
    # The unkeyed chain cannot tell: this is the attack a key kept outside the database stops.
    assert (await AuditSealer(collections).verify()).ok
    caught = await AuditSealer(collections, keys).verify()
    assert not caught.ok
    assert set(caught.problems) == {
        f"seal {seq}: its signature does not match (rewritten and hashed again?)" for seq in (2, 3, 4)}
    result = cli(settings, "audit", "verify")
    assert result.returncode == 1 and "seal 2: its signature does not match" in result.stdout

    # Nor can the signatures just be taken away: from a seal after a signed one, or from them all.
    seals = collections.db.get_collection("audit_seals")
    await seals.update_one({"seq": 3}, {"$unset": {"signature": "", "key_id": ""}})
    assert "seal 3 is not signed" in (await AuditSealer(collections, keys).verify()).problems
    await seals.update_many({}, {"$unset": {"signature": "", "key_id": ""}})
    stripped = await AuditSealer(collections, keys).verify()
    assert any(p.startswith("seal 4, the newest, is not signed") for p in stripped.problems), stripped.problems


async def test_a_chain_begun_before_the_key_is_checked_from_its_first_signed_seal(collections: Collections) -> None:
    keys = AuditKeys(KEY)
    ids = [await loaded_posting(collections, n) for n in range(2)]
    await AuditSealer(collections).seal_all()  # paypost before PAYPOST_AUDIT_KEY was set
    await sealed_postings(collections, keys, 10, 2)  # and after
    upgraded = await AuditSealer(collections, keys).verify()
    assert upgraded.ok, upgraded.problems
    assert (upgraded.unsigned_before_key, upgraded.signed) == (1, 2)
    # An entry of the unsigned era rewritten and the chain hashed again: the signed seals catch it.
    await rewrite_and_rehash(collections, ids[0])
    assert set((await AuditSealer(collections, keys).verify()).problems) == {
        f"seal {seq}: its signature does not match (rewritten and hashed again?)" for seq in (2, 3)}


async def test_a_wrong_key_is_reported_and_a_rotated_key_verifies(settings: Settings, collections: Collections) -> None:
    await sealed_postings(collections, AuditKeys(KEY), 1, 2)
    assert cli(settings, "audit", "verify").returncode == 0
    wrong = cli(settings, "audit", "verify", key=NEW_KEY)
    assert wrong.returncode == 1
    assert "seal 1 is signed with a key PAYPOST_AUDIT_KEY does not hold (a wrong key?)" in wrong.stdout
    short = cli(settings, "audit", "verify", key="short")
    assert short.returncode == 2 and "at least 32 characters" in short.stderr and "short" not in short.stdout

    # Rotation: the new key first, the old one after it; new seals are signed with the new key.
    rotated = AuditKeys(f"{NEW_KEY},{KEY}")
    await sealed_postings(collections, rotated, 3, 1)
    seals = collections.db.get_collection("audit_seals")
    last = await seals.find_one({"seq": 3})
    assert last is not None and last["key_id"] == AuditKeys(NEW_KEY).signing_id != AuditKeys(KEY).signing_id
    both = cli(settings, "audit", "verify", key=f"{NEW_KEY},{KEY}")
    assert both.returncode == 0 and "3 seals signed with PAYPOST_AUDIT_KEY" in both.stdout, both.stdout


async def test_an_export_catches_a_trail_cut_short_or_rolled_back(
    settings: Settings, collections: Collections, tmp_path: Path,
) -> None:
    keys = AuditKeys(KEY)
    ids = await sealed_postings(collections, keys, 1, 3)
    export = tmp_path / "heads.jsonl"
    written = cli(settings, "audit", "export", str(export))
    assert written.returncode == 0, written.stderr
    heads = [json.loads(line) for line in export.read_text().splitlines()]
    assert [h["seq"] for h in heads] == [1, 2, 3]
    assert all(h["signature"] and h["key_id"] == keys.signing_id and h["hash"] for h in heads)
    assert cli(settings, "audit", "verify", "--against", str(export)).returncode == 0

    # Cut short: the last posting and the seal that covered it go, and what is left is a whole chain.
    seals = collections.db.get_collection("audit_seals")
    await seals.delete_one({"seq": 3})
    await collections.postings.delete_one({"_id": ids[2]})
    assert cli(settings, "audit", "verify").returncode == 0  # alone, nothing shows
    cut = cli(settings, "audit", "verify", "--against", str(export))
    assert cut.returncode == 1
    assert "the trail was cut short: the export has seals up to 3, the database up to 2" in cut.stdout

    # Rolled back and carried on: a new seal 3, signed by paypost itself, but not the one exported.
    await sealed_postings(collections, keys, 10, 1)
    assert cli(settings, "audit", "verify").returncode == 0
    rolled = cli(settings, "audit", "verify", "--against", str(export))
    assert rolled.returncode == 1
    assert "seal 3 is not the one exported (the trail was rolled back or rewritten)" in rolled.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 1}\n')
    refused = cli(settings, "audit", "verify", "--against", str(bad))
    assert refused.returncode == 2 and "line 1 is not a seal head" in refused.stderr
