"""Every MongoDB store that keeps indexes of its own is in the one registry start-up applies
(``paypost.infra.mongo.indexes.INDEXED``): a store added without it would run its queries unindexed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import paypost.infra.mongo as mongo
from paypost.infra.mongo.indexes import INDEXED


def stores_with_indexes() -> set[type]:
    found: set[type] = set()
    for info in pkgutil.iter_modules(mongo.__path__):
        module = importlib.import_module(f"{mongo.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "ensure_indexes" in vars(cls):
                found.add(cls)
    return found


def test_every_store_with_indexes_is_in_the_registry() -> None:
    found = stores_with_indexes()
    assert len(found) >= 10, "the stores are read wrong"
    assert found - set(INDEXED) == set(), "a store with ensure_indexes that start-up does not apply"


def test_the_registry_lists_only_stores_with_indexes() -> None:
    assert all(callable(getattr(make, "ensure_indexes", None)) for make in INDEXED)
    assert len(set(INDEXED)) == len(INDEXED)
