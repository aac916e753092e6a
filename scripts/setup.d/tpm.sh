#!/usr/bin/env bash
# TPM test oracles: keylime (PyPI, a test oracle only, never a veritee dependency) in .venv.
# Keylime's wheel declares no dependencies, so they are listed here; it also imports the
# Debian-only ``gpg`` bindings (python3-gpg, from tpm.apt), linked into the venv.
# Idempotent: returns at once when keylime and gpg already import.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "tpm.sh: .venv missing (run scripts/setup.sh)" >&2; exit 1; }

if "$PY" -c 'import gpg, keylime.tpm.tpm_util, keylime.mba.mba, keylime.ima.ima' >/dev/null 2>&1; then
    exit 0
fi

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if ! "$PY" -c 'import gpg' >/dev/null 2>&1; then
    gpg_init=$(dpkg -L python3-gpg 2>/dev/null | grep -E '/gpg/__init__\.py$' | head -n1 || true)
    if [ -z "$gpg_init" ]; then
        echo "tpm.sh: python3-gpg is not installed (scripts/setup.d/tpm.apt lists it)" >&2
        exit 1
    fi
    ln -sfn "$(dirname "$gpg_init")" "$site/gpg"
fi

"$PY" -m pip install -q 'keylime>=7.14,<7.15' tornado pyzmq pyyaml requests 'sqlalchemy>=2.0.39' \
    alembic packaging psutil lark pyasn1 pyasn1-modules jinja2 jsonschema

"$PY" -c 'import gpg, keylime.tpm.tpm_util, keylime.mba.mba, keylime.ima.ima'
echo "tpm.sh: keylime $("$PY" -c 'import importlib.metadata as m; print(m.version("keylime"))') ready"
