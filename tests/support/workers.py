"""What a pytest-xdist worker found that fails the whole session, carried to the controller.

The suite runs in several worker processes (``-n``; pyproject.toml's ``addopts``). A session hook
that sets ``session.exitstatus`` in a worker changes nothing the controller reports, so a worker
hands its findings over (``config.workeroutput``, sent when it finishes) and the controller's
``pytest_testnodedown`` takes them back, before its own ``pytest_sessionfinish`` decides."""

from __future__ import annotations

from typing import Any

import pytest


def in_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker (the controller, or a run without ``-n``, is not)."""
    return hasattr(config, "workeroutput")


def hand_over(config: pytest.Config, key: str, lines: list[str]) -> None:
    """In a worker, send ``lines`` to the controller under ``key`` (the worker's session ends after)."""
    if in_worker(config):
        config.workeroutput[key] = list(lines)  # type: ignore[attr-defined]  # set by xdist on its workers


def taken_back(node: Any, key: str) -> list[str]:
    """What the worker ``node`` handed over under ``key`` (nothing if it crashed first)."""
    output: dict[str, Any] = getattr(node, "workeroutput", {}) or {}
    return [str(line) for line in output.get(key, [])]
