"""The repository documents itself: its public contract is docs/contract.md, every reference to a
section of it names one that exists, and nothing in the repository points at a file outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from paypost.domain.load_errors import LoadErrorCode
from paypost.infra.runtime.settings import Settings
from paypost.schemas import topics

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
SECTIONS = ["Messages", "Load statuses and Load Errors", "HTTP API", "Configuration and commands",
            "The web console", "Practices as tenants", "The practice-management system", "The office's triage",
            "More than one paypost", "Money that moves back", "Deposits and the close of a month",
            "Patient data", "Following a payment", "Finding the patient"]
# Files a session's machine holds beside the repository, which a reader of the repository has not.
OUTSIDE = re.compile(r"CONTRACT\.md|ENVIRONMENT\.md|STYLE\.md|\bshared/|/work/")
SKIPPED_DIRS = {".git", ".venv", ".paypost", "build", "dist", "node_modules", "__pycache__", ".mypy_cache",
                ".ruff_cache", ".pytest_cache", ".schemathesis"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".sh", ".txt", ".cfg", ".ini", ".js", ".html",
                 ".css", ".dockerignore"}


def contract_sections() -> dict[str, str]:
    """The contract's numbered headings: "1", "1.1", ... -> title."""
    return dict(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? (.+)$", CONTRACT.read_text(), re.MULTILINE))


def test_the_contract_is_version_1_2_with_its_fourteen_sections() -> None:
    text = CONTRACT.read_text()
    assert text.startswith("# paypost's public contract, version 1.2\n")
    sections = contract_sections()
    assert [sections[str(n)].split(" (")[0].split(":")[0] for n in range(1, 15)] == SECTIONS
    assert [k for k in sections if "." in k] == ["1.1", "1.2", "1.3", "1.4"]


def test_the_contract_names_every_exchange_routing_key_and_load_error_paypost_uses() -> None:
    text = CONTRACT.read_text()
    names = [topics.PAYMENTS_EXCHANGE, topics.COMMANDS_EXCHANGE, topics.EVENTS_EXCHANGE, topics.DEAD_LETTER_QUEUE,
             topics.PAYMENT_POSTED, topics.PAYMENT_REFUNDED, topics.TRANSFER_SETTLED, topics.PATIENT_MAPPING_UPDATED,
             topics.POSTING_RETRY, topics.POSTING_CLEAR, topics.SCHEMA_VERSION_HEADER,
             topics.PAYMENT_VOIDED, topics.PAYMENT_RETURNED, topics.PAYMENT_DISPUTED, topics.DISPUTE_CLOSED,
             topics.DEPOSIT_RECEIVED]
    assert [name for name in names if f"`{name}`" not in text] == []
    assert [code.value for code in LoadErrorCode if f"`{code.value}`" not in text] == []


def test_the_contract_gives_the_defaults_paypost_has() -> None:
    """The configuration table of section 4 against the settings paypost reads."""
    table = dict(re.findall(r"^\| `(PAYPOST_\w+)` \| `?([^`|]+?)`? \|", CONTRACT.read_text(), re.MULTILINE))
    assert set(table) == {"PAYPOST_AMQP_URL", "PAYPOST_MONGODB_URI", "PAYPOST_MONGODB_DB", "PAYPOST_HTTP",
                          "PAYPOST_API_TOKENS", "PAYPOST_ALERT_ESCALATE_AFTER"}
    fields = Settings.model_fields
    assert table["PAYPOST_AMQP_URL"] == fields["amqp_url"].default
    assert table["PAYPOST_MONGODB_URI"] == fields["mongodb_uri"].default
    assert table["PAYPOST_MONGODB_DB"] == fields["mongodb_db"].default
    assert table["PAYPOST_HTTP"] == fields["http"].default
    assert float(table["PAYPOST_ALERT_ESCALATE_AFTER"]) == fields["alert_escalate_after"].default


@pytest.mark.parametrize("document", ["README.md", "infra/deploy/README.md"])
def test_every_contract_section_referred_to_exists(document: str) -> None:
    text = (ROOT / document).read_text()
    references = re.findall(r"docs/contract\.md §(\d+(?:\.\d+)?)", text)
    assert references, f"{document} does not point at the contract"
    assert sorted(set(references) - set(contract_sections())) == []


def test_the_readme_points_at_the_contract_in_the_repository() -> None:
    assert "[docs/contract.md](docs/contract.md)" in (ROOT / "README.md").read_text()


def text_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_file() and not path.is_symlink() and (path.suffix in TEXT_SUFFIXES or path.name in {
                "Dockerfile", "run", "LICENSE"}):
            found.append(path)
    return found


def test_nothing_in_the_repository_points_outside_it() -> None:
    files = text_files()
    assert ROOT / ".ci" / "run" in files and ROOT / "README.md" in files and CONTRACT in files
    this = Path(__file__).resolve()
    pointing = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                for path in files if path != this
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                if OUTSIDE.search(line)]
    assert pointing == []
