#!/usr/bin/env bash
# Rewrites paypost's lock from pyproject.toml: exact versions with their hashes, for Python 3.11
# on Linux x86_64 (CI's machines and the container image).
#
#   requirements/update.sh                                   after a change to pyproject.toml's dependencies
#   requirements/update.sh --upgrade-package cryptography    one package to the newest pyproject allows (the others stay)
#   requirements/update.sh --upgrade                         everything to the newest that pyproject allows
#
# ci.txt (every extra, and setuptools, which builds paypost) is resolved first; paypost.txt (what
# the image runs) and build.txt (what builds the image's wheel) are then held to ci.txt's versions,
# so the image runs exactly what CI tested. Needs pip-tools (in the test extra).
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK_COMPILER=${LOCK_COMPILER:-.venv/bin/pip-compile}  # not PIP_...: pip would read that as an option
common=(--quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host)

"$LOCK_COMPILER" "${common[@]}" --allow-unsafe --all-extras --build-deps-for wheel \
  --output-file requirements/ci.txt "$@" pyproject.toml
"$LOCK_COMPILER" "${common[@]}" --constraint requirements/ci.txt \
  --output-file requirements/paypost.txt pyproject.toml
"$LOCK_COMPILER" "${common[@]}" --allow-unsafe --constraint requirements/ci.txt --only-build-deps --build-deps-for wheel \
  --output-file requirements/build.txt pyproject.toml
