#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, types, then every test tier.
# Installs what the tests need (tox in a private venv; tox installs torch first, then
# edgebench with all extras). Extra arguments go to pytest, e.g. scripts/test.sh -k stats;
# the fast tier is scripts/test.sh -m "not slow" (docs/testing.md: tiers, times, markers).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv_support "${PYTHON:-python3}"
scripts/setup_test_system.sh  # sshd, adb, qemu-user...: asks first by hand, prints in CI
[ -x .venv-tools/bin/tox ] || { "${PYTHON:-python3}" -m venv .venv-tools &&
    .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "tox>=4.11"; }
if [ "$#" -gt 0 ]; then
    exec .venv-tools/bin/tox run -e tests -- "$@"
fi
exec .venv-tools/bin/tox run -e lint,types,tests
