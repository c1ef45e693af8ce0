#!/usr/bin/env bash
# The quality gates, then the whole test suite: what CI runs (after tools/dev-setup.sh).
# Extra arguments go to pytest (`-m fast` for the fast tier). Exit status: the first gate
# that failed, else pytest's.
#
# `tools/check.sh --latest [pytest args]`: the same in a fresh virtual environment with the
# newest releases of every dependency; when it passes, constraints.txt (the lock that
# tools/dev-setup.sh installs from) is rewritten from that environment.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  venv="$(mktemp -d)/venv"
  python -m venv "$venv" || exit 1
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  python -m pip install -q --upgrade pip || exit 1
  bash tools/dev-setup.sh --latest || exit 1
  bash tools/check.sh "$@"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    {
      echo "# The versions the development set-up installs (tools/dev-setup.sh: pip install -c constraints.txt),"
      echo "# so that the suite is the same on every machine. Refreshed by \`bash tools/check.sh --latest\`,"
      echo "# which runs the suite against the newest releases first. Python $(python -c 'import sys; print(*sys.version_info[:2], sep=".")'), $(uname -m), $(date +%Y-%m-%d)."
      python -m pip freeze --exclude-editable | grep -v '^ffstream @'
    } > constraints.txt
    echo "constraints.txt refreshed from the newest releases (review the diff, then commit it)"
  fi
  exit "$rc"
fi
ruff check ffstream tests tools || exit 1
ruff format --check ffstream tests tools || exit 1
mypy ffstream || exit 1
python -m pytest -q "$@"
