#!/usr/bin/env bash
# Builds and tests the Python package as a user would: a fresh venv, maturin + numpy + pytest from PyPI,
# `pip install crates/fab-py` (maturin is the PEP 517 backend, release build), then pytest on tests/.
# Usage: crates/fab-py/ci.sh [venv-dir]   (default: a new temporary directory, removed afterwards)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if [[ $# -ge 1 ]]; then
  venv="$1"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  venv="$tmp/venv"
fi
started=$SECONDS
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check maturin numpy pytest
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here"
echo "fab-py: installed in $((SECONDS - started)) s" >&2
cd "$here/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider
echo "fab-py: installed and tested in $((SECONDS - started)) s" >&2
