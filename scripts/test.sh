#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what the tests need beyond Cargo
# (LiveKit's official Python SDK for the cross-check), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {
  python3 -m pip install --disable-pip-version-check --no-input -q "$@" -r tests/py/requirements.txt
}
# A Debian-managed Python refuses global installs (PEP 668); the tests run the python3 on PATH.
pip_install || pip_install --break-system-packages

exec cargo test --locked "$@"
