#!/usr/bin/env bash
# Installs bbaccess as users do (a wheel, into a fresh virtual environment outside the checkout)
# and runs the demo with it: a snapshot against the built-in simulator, a day of churn, a second
# snapshot and the diff. Fails if the wheel lacks anything a command reads at run time.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$here/.venv/bin/pip" wheel --quiet --no-deps -w "$work/dist" "$here"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$work"/dist/bbaccess-*.whl
cd "$work"
"$work/venv/bin/bbaccess" demo --db "$work/demo.db" > "$work/demo.out"
grep -q '^Changes from snapshot 1 to snapshot 2' "$work/demo.out"
"$work/venv/bin/bbaccess" snapshots --db "$work/demo.db" | grep -q complete
echo "install check: the wheel installs and runs the demo outside the checkout"
