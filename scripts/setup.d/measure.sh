#!/usr/bin/env bash
# Launch-measurement oracle: sev-snp-measure (PyPI, a test oracle and benchmark peer only,
# never a veritee dependency) in .venv.
# Idempotent: returns at once when it already imports.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "measure.sh: .venv missing (run scripts/setup.sh)" >&2; exit 1; }

if "$PY" -c 'import sevsnpmeasure.guest' >/dev/null 2>&1; then
    exit 0
fi

"$PY" -m pip install -q 'sev-snp-measure>=0.0.12,<0.1'

"$PY" -c 'import sevsnpmeasure.guest'
echo "measure.sh: sev-snp-measure $("$PY" -c 'import importlib.metadata as m; print(m.version("sev-snp-measure"))') ready"
