#!/usr/bin/env bash
# Install everything veritee and its tests need on a fresh Debian machine:
# system packages (oracles used by the tests), a virtual environment, the package.
# Feature areas add Debian packages in scripts/setup.d/*.apt (one name per line)
# and extra steps in scripts/setup.d/*.sh (run after the venv exists).
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t APT_PACKAGES < <(cat scripts/setup.d/*.apt 2>/dev/null | sed 's/#.*//' | xargs -n1 | sort -u)

need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_apt+=(python3-venv)
fi
if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

for hook in scripts/setup.d/*.sh; do
    [ -e "$hook" ] || continue
    bash "$hook"
done
