"""The hot path's fast helpers give what the slow ones gave: UUIDs of version 4, and each amount
stored as exactly the Decimal128 of its own text."""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

from bson import BSON

from paypost.domain.ids import uuid4_text
from paypost.infra.mongo.database import CODECS, DecimalCodec


def test_uuid4_text_gives_distinct_version_4_uuids_across_refills_of_its_pool() -> None:
    made = [uuid4_text() for _ in range(1_000)]  # 16 KB: the 4 KiB pool is drawn again three times
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_a_forked_child_draws_ids_its_parent_does_not() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids, to the parent
        os.write(writer, ",".join(uuid4_text() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    parents = {uuid4_text() for _ in range(10)}
    childs = set(os.read(reader, 4096).decode().split(","))
    os.waitpid(child, 0)
    assert len(childs) == 10 and not parents & childs


def test_each_amount_is_stored_as_its_own_text_even_when_equal_amounts_were_stored_before() -> None:
    codec = DecimalCodec()
    for text in ("125.00", "125.0", "125", "-20.50", "0.00", "-0.00", "125.00"):
        stored = codec.transform_python(Decimal(text))
        assert str(stored) == text
    doc = BSON.encode({"a": Decimal("40.00"), "b": Decimal("40.0")}, codec_options=CODECS)
    assert {k: str(v) for k, v in BSON(doc).decode().items()} == {"a": "40.00", "b": "40.0"}
