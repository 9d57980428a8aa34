"""The bench's figures: each measure as a row of the table and a key of the JSON summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    stopped_by: str | None = None  # what ended the run before its last phase: the figures are those before

    def add(self, name: str, value: float, unit: str, key: str | None = None, note: str = "") -> None:
        places = ".2f" if value < 10 else ",.1f" if value < 1000 else ",.0f"
        shown = f"{value:{places}} {unit}"
        self.rows.append((name, shown, note))
        if key:
            self.figures[key] = round(value, 3)

    def value(self, key: str) -> float | None:
        """A figure measured earlier in the run, if it was."""
        return self.figures.get(key)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def render(results: Results, quick: bool, elapsed: float) -> str:
    width = max((len(r[0]) for r in results.rows), default=0)
    lines = [f"paypost bench{' --quick' if quick else ''} ({elapsed:.0f} s, {os.cpu_count()} cores)", ""]
    for name, value, note in results.rows:
        lines.append(f"  {name:<{width}}  {value:>18}  {note}")
    return "\n".join(lines)


def summary(results: Results) -> dict[str, float]:
    replay = "replay_1k_s" if "replay_1k_s" in results.figures else "replay_10k_s"  # --quick replays 1,000
    keys = ["baseline_pps", "pipeline_pps", "ratio", "p50_ms", "p95_ms", "p99_ms", replay, "report_p95_ms",
            "peak_rss_mb"]
    return {k: results.figures.get(k, float("nan")) for k in keys} | {
        k: v for k, v in results.figures.items() if k not in keys}
