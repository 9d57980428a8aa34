"""What a Python engineer checks first: the lock, the wheel, the one version, the licence, the SBOM.

The lock (requirements/*.txt, made by requirements/update.sh with pip-compile) pins every
dependency that pyproject.toml declares, at a version it allows, with its hashes; the image's locks
hold exactly CI's versions. A wheel built from this checkout has one top-level name, carries
py.typed and the licence, and says the version pyproject.toml says. The README's SBOM command
writes a CycloneDX document that CycloneDX's own schema accepts, naming every locked package.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import paypost

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# One worker runs this module: the wheel its tests read is built once.
pytestmark = pytest.mark.xdist_group("packaging")

# name==version, then its hashes (continued lines), as pip-compile --generate-hashes writes them; a
# package another asks for with an extra (pip-audit asks for cachecontrol[filecache]) is pinned with
# that extra, so that pip takes the pin for it rather than look for a version of its own.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9._,-]+\])?"
                 r"==(?P<version>\S+)(?P<rest>(?:[^\n]*\\\n)*[^\n]*)", re.M)

HASH = r"--hash=sha256:([0-9a-f]{64})"
PIN_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[^\s;]+( ; [^\\]+)? \\$")


def locked(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """A lock file's packages: canonical name -> (version, sha256 hashes)."""
    text = (LOCKS / name).read_text()
    return {str(canonicalize_name(m["name"])): (m["version"], frozenset(re.findall(HASH, m["rest"])))
            for m in PIN.finditer(text)}


def declared(*extras: str) -> list[Requirement]:
    """pyproject.toml's requirements that apply on this platform, with the given extras."""
    wanted = [Requirement(line) for line in PROJECT["dependencies"]]
    for extra in extras:
        wanted += [Requirement(line) for line in PROJECT["optional-dependencies"][extra]]
    return [r for r in wanted if r.marker is None or r.marker.evaluate({"extra": ""})]


def build_requirements() -> list[Requirement]:
    return [Requirement(line) for line in PYPROJECT["build-system"]["requires"]]


@pytest.mark.parametrize(("lock", "requirements"), [
    ("ci.txt", declared(*PROJECT["optional-dependencies"]) + build_requirements()),
    ("paypost.txt", declared()),
    ("build.txt", build_requirements()),
])
def test_every_declared_dependency_is_locked_at_a_version_pyproject_allows(
        lock: str, requirements: list[Requirement]) -> None:
    pins = locked(lock)
    for requirement in requirements:
        name = str(canonicalize_name(requirement.name))
        if name == "paypost":  # an extra naming paypost's own (ledger-suite): paypost is installed, not locked
            continue
        assert name in pins, f"{requirement} is not in requirements/{lock}: run requirements/update.sh"
        version, _ = pins[name]
        assert requirement.specifier.contains(Version(version), prereleases=True), \
            f"requirements/{lock} has {name}=={version}, pyproject.toml asks {requirement}: run requirements/update.sh"


@pytest.mark.parametrize("lock", ["ci.txt", "paypost.txt", "build.txt"])
def test_every_locked_package_is_pinned_with_its_hashes_and_nothing_else(lock: str) -> None:
    text = (LOCKS / lock).read_text()
    pins = locked(lock)
    assert pins
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]
    # Every requirement line is a pin: no range, no URL, no editable, no index or link of this machine.
    # (A marker may follow: the lock is for Linux x86_64, where those requirements apply.)
    lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert [line for line in lines if not PIN_LINE.match(line)] == []
    body = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert not re.search(r"--(extra-)?index-url|--find-links|--trusted-host|file:|://", body)


def test_the_image_runs_exactly_what_ci_tested() -> None:
    ci = locked("ci.txt")
    for lock in ("paypost.txt", "build.txt"):
        for name, pin in locked(lock).items():
            assert ci.get(name) == pin, f"{name}: requirements/{lock} {pin[0]}, ci.txt {ci.get(name, ('none',))[0]}"


def test_the_runtime_lock_holds_no_tool_of_the_tests() -> None:
    runtime = set(locked("paypost.txt"))
    for tool in ("pytest", "mypy", "ruff", "deptry", "cyclonedx-bom", "pip-tools", "setuptools", "pip"):
        assert tool not in runtime


# -- the wheel ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built as the image's build stage builds it (the lock's setuptools,
    no isolation, no dependencies), from a copy so that the checkout gets no build/ or egg-info."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, source / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(out), str(source)], check=True, timeout=240)
    [built] = out.glob("paypost-*.whl")
    return built


def test_the_wheel_installs_one_top_level_name_typed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"paypost"}
    # Adapter authors type-check against paypost.adapters and the shared ledger suite.
    assert "paypost/py.typed" in names
    assert {"paypost/adapters.py", "paypost/testing/ledger_suite.py", "paypost/infra/rabbit/broker.py"} <= set(names)


def test_the_wheel_says_one_version_and_carries_its_licence(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    fields = Parser().parsestr(archive.read(metadata).decode())
    assert fields["Version"] == PROJECT["version"] == paypost.__version__
    assert wheel.name.startswith(f"paypost-{PROJECT['version']}-")
    assert fields["License-Expression"] == "Apache-2.0"
    assert fields.get_all("License-File") == ["LICENSE"]
    licence = archive.read(metadata.replace("METADATA", "licenses/LICENSE")).decode()
    assert licence == (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a notice


def test_the_version_is_written_once() -> None:
    """pyproject.toml holds the version; the code reads it from the installed metadata."""
    pattern = re.escape(PROJECT["version"])
    shipped = [path for folder in {"paypost", *PYPROJECT["tool"]["setuptools"]["package-dir"].values()}
               for path in (ROOT / folder).rglob("*.py")]
    assert shipped
    assert [p for p in shipped if re.search(rf"['\"]{pattern}['\"]", p.read_text())] == []
    assert paypost.__version__ == PROJECT["version"]


# -- the SBOM -----------------------------------------------------------------------------------


def readme_sbom_command() -> list[str]:
    """The SBOM command the README names (section "Installing from the lock")."""
    commands = re.findall(r"^\.venv/bin/cyclonedx-py requirements .*$", (ROOT / "README.md").read_text(), re.M)
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def test_the_readme_sbom_command_writes_a_valid_cyclonedx_document(tmp_path: Path) -> None:
    command = readme_sbom_command()
    output = command.index("--output-file") + 1
    command[output] = str(tmp_path / command[output])
    # The README's command, run with this interpreter's cyclonedx-py (installed from the lock).
    command[0] = str(Path(sys.executable).with_name("cyclonedx-py"))
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, capture_output=True)
    text = Path(command[output]).read_text()
    document: dict[str, Any] = json.loads(text)
    assert document["bomFormat"] == "CycloneDX"
    errors = JsonStrictValidator(SchemaVersion.from_version(document["specVersion"])).validate_str(text)
    assert errors is None, errors
    root = document["metadata"]["component"]
    assert (root["name"], root["version"]) == ("paypost", PROJECT["version"])
    assert root["licenses"] == [{"license": {"acknowledgement": "declared", "id": "Apache-2.0"}}]
    # Every package of the image's lock, with its version, its package URL and the lock's hashes.
    components = {str(canonicalize_name(c["name"])): c for c in document["components"]}
    pins = locked(Path(command[command.index("requirements") + 1]).name)
    assert set(components) == set(pins)
    for name, (version, hashes) in pins.items():
        component = components[name]
        assert component["version"] == version
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        found = {h["content"] for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])}
        assert found == hashes, name
