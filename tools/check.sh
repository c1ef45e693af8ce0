#!/usr/bin/env bash
# The quality gates, then the whole test suite: what CI runs (after tools/dev-setup.sh).
# Extra arguments go to pytest. Exit status: the first gate that failed, else pytest's.
set -uo pipefail
cd "$(dirname "$0")/.."
ruff check ffstream tests tools || exit 1
ruff format --check ffstream tests tools || exit 1
mypy ffstream || exit 1
python -m pytest -q "$@"
