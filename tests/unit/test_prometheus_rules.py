"""paypost's Prometheus rules (infra/deploy/prometheus/rules.yml): valid, tested by promtool's own
unit tests (rules.test.yml: each alert fires on what it watches and stays quiet when healthy), each
with a runbook, and reading only metrics paypost exposes. promtool is Debian's ``prometheus``
package (.ci/run installs it as it installs chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy import DEPLOY, paypost_metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules.yml"
# Metrics from elsewhere than paypost's /metrics: Prometheus's own scrape health.
FOREIGN = {"up"}
# Label matchers, ranges, grouping clauses, strings and numbers: what is left names metrics.
NOT_NAMES = r'\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)|"[^"]*"|(?<![\w:])\d+(\.\d+)?'
PROMQL_FUNCTIONS = {"sum", "max", "min", "rate", "deriv", "min_over_time", "absent", "and", "or", "by", "round"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is required: apt-get install -y prometheus (Debian's package carries it)")
    return found


def rules() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_prometheus_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_alert_fires_and_stays_quiet_as_its_promtool_tests_say() -> None:
    result = subprocess.run([promtool(), "test", "rules", "rules.test.yml"], cwd=PROMETHEUS, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_by_promtool() -> None:
    tests = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())["tests"]
    firing = {check["alertname"] for test in tests for check in test.get("alert_rule_test", []) if check["exp_alerts"]}
    quiet = {check["alertname"] for test in tests for check in test.get("alert_rule_test", [])
             if not check["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts == firing  # each one seen firing
    assert alerts == quiet  # and each one seen quiet


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The promtool tests can fail: one expected annotation changed makes the run fail."""
    (tmp_path / "rules.yml").write_text(RULES.read_text())
    text = (PROMETHEUS / "rules.test.yml").read_text()
    broken = text.replace('"20% of recent payments', '"21% of recent payments')
    assert broken != text
    (tmp_path / "rules.test.yml").write_text(broken)
    result = subprocess.run([promtool(), "test", "rules", "rules.test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert "PaypostPostingObjectiveFastBurn" in result.stdout + result.stderr


def test_every_alert_has_a_runbook_page_with_its_three_parts() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        page = ROOT / rule["annotations"]["runbook"]
        assert page.is_file(), (rule["alert"], page)
        text = page.read_text()
        for part in ("## What it means", "## How to see it", "## What to do"):
            assert part in text, (page, part)


def test_every_load_error_code_has_a_runbook_page() -> None:
    from paypost.domain.load_errors import LoadErrorCode

    for code in LoadErrorCode:
        page = ROOT / "docs" / "runbooks" / "load-errors" / f"{code.value}.md"
        assert page.is_file(), page
        text = page.read_text()
        assert code.value in text
        for part in ("## What it means", "## How to see it", "## What to do"):
            assert part in text, (page, part)


def test_the_rules_read_only_metrics_paypost_exposes() -> None:
    known = paypost_metric_names() | FOREIGN
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        expr = re.sub(NOT_NAMES, " ", rule["expr"])
        used = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - PROMQL_FUNCTIONS
        assert used, rule
        assert used <= known | recorded, (rule.get("alert") or rule.get("record"), used - known - recorded)


def test_no_practice_label_on_a_histogram() -> None:
    """Cardinality: a histogram's series are labels times buckets; with 10,000 practices a practice
    label on one would be a quarter of a million series. Only the held practices' gauge names one."""
    from prometheus_client import Gauge, Histogram

    import paypost.handlers.metrics as metrics

    for value in vars(metrics).values():
        if isinstance(value, Histogram):
            assert "practice_id" not in value._labelnames, value
        if isinstance(value, Gauge) and "practice_id" in value._labelnames:
            assert value is metrics.PRACTICE_HELD
