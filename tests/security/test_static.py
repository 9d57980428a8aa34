"""Static checks over paypost's code: bandit finds nothing of medium severity or worse, and every
silenced finding (a ``noqa`` or a ``type: ignore``) says on its line why."""

from __future__ import annotations

import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "schemas", "consumers", "producers", "handlers", "infra", "api", "paypost")

# A noqa names its rule codes, then says why (after a dash or in brackets); a type: ignore names
# its error codes, then says why in a comment of its own.
NOQA = re.compile(r"#\s*noqa\b(?P<codes>:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<codes>\[[^\]]*\])?(?P<rest>.*)")


def test_bandit_is_clean() -> None:
    bandit = str(Path(sys.executable).with_name("bandit"))
    result = subprocess.run(
        [bandit, "-q", "-r", *PACKAGES, "--severity-level", "medium", "--confidence-level", "medium"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def unexplained(comment: str) -> str | None:
    """What is missing from a suppression comment, or None when it names its codes and says why."""
    for pattern, reason in ((NOQA, r"\W*\w"), (TYPE_IGNORE, r"\s*#\s*\w")):
        found = pattern.search(comment)
        if found is None:
            continue
        if not found["codes"]:
            return "no codes"
        if not re.match(reason, found["rest"]):
            return "no reason"
    return None


def test_a_suppression_is_recognised_only_with_its_codes_and_a_reason() -> None:
    assert unexplained("# noqa: BLE001 - reconnect after a broker restart") is None
    assert unexplained("# noqa: S311 (seeded, no secret)") is None
    assert unexplained("# type: ignore[valid-type]  # FastStream reads the model here") is None
    assert unexplained("# noqa: BLE001") == "no reason"
    assert unexplained("# noqa") == "no codes"
    assert unexplained("# type: ignore[arg-type]") == "no reason"
    assert unexplained("# type: ignore  # why") == "no codes"
    assert unexplained("# a comment about noqa-free code") is None


def comments(path: Path) -> list[tokenize.TokenInfo]:
    with tokenize.open(path) as source:
        return [token for token in tokenize.generate_tokens(source.readline) if token.type == tokenize.COMMENT]


def test_every_noqa_and_type_ignore_says_why_on_its_line() -> None:
    files = [path for folder in (*PACKAGES, "tests", "examples") for path in sorted((ROOT / folder).rglob("*.py"))]
    missing = [
        f"{path.relative_to(ROOT)}:{token.start[0]}: {what}: {token.string}"
        for path in files
        for token in comments(path)
        if (what := unexplained(token.string))
    ]
    assert not missing, "\n".join(missing)


# -- one installed name -----------------------------------------------------------------------------
TOP_FOLDERS = ("domain", "schemas", "producers", "handlers", "infra", "consumers", "api")
BARE_IMPORT = re.compile(rf"^\s*(?:from|import) (?:{'|'.join(TOP_FOLDERS)})(?:\.|\s|$)", re.MULTILINE)


def test_code_imports_the_folders_by_their_installed_name_only() -> None:
    # ``import infra.x`` would work from a checkout (its root is on the path) and load a second copy
    # of the module beside ``paypost.infra.x``; an installed wheel has no ``infra`` at all.
    files = [path for folder in (*TOP_FOLDERS, "paypost", "tests", "examples")
             for path in sorted((ROOT / folder).rglob("*.py"))]
    bare = [f"{path.relative_to(ROOT)}: {found.group(0).strip()}"
            for path in files for found in BARE_IMPORT.finditer(path.read_text())]
    assert not bare, "\n".join(bare)
    assert BARE_IMPORT.search("from infra.mongo import x") and not BARE_IMPORT.search("from paypost.infra import x")


def test_each_folder_is_linked_under_paypost_and_mapped_there_for_the_wheel() -> None:
    import tomllib

    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in TOP_FOLDERS:
        link = ROOT / "paypost" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), folder
        assert package_dir[f"paypost.{folder}"] == folder
