#!/usr/bin/env bash
# Set everything up, then run the whole quality gate: lint, types, layers, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source .venv/bin/activate
echo "== ruff"
ruff check src tests bench
echo "== mypy (strict on src/)"
mypy
echo "== import-linter (layers of DESIGN.md)"
lint-imports
echo "== pytest"
pytest "$@"
