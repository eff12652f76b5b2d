#!/usr/bin/env bash
# mypy --strict on edgebench as it is installed: harness/ is the package edgebench, plugins/
# is edgebench.plugins and devices/ is edgebench.devices (pyproject.toml's package-dir).
# mypy follows neither that mapping nor the editable install's import hook (an unresolved
# `from edgebench.x import y` would silently be Any), so this links the three directories
# into that layout under .mypy-tree/ and runs `mypy -p edgebench` on it; errors are printed
# with the source paths. The device-side runner scripts (plugins/backends/*/*_runner.py,
# Python 3.8, `import edgebench_agent` by a bare name, untyped) are excluded in
# pyproject.toml and checked by the second call, without --strict, as Python 3.8.
# Extra arguments go to the first mypy call. MYPY overrides the mypy command.
set -euo pipefail
cd "$(dirname "$0")/.."
mypy=${MYPY:-$(command -v mypy || echo .venv/bin/mypy)}
tree=.mypy-tree
rm -rf "$tree"
mkdir -p "$tree/edgebench"
for path in harness/*; do
    ln -s "../../$path" "$tree/edgebench/${path#harness/}"
done
ln -s ../../plugins "$tree/edgebench/plugins"
ln -s ../../devices "$tree/edgebench/devices"
to_source() {
    sed -e "s#^$tree/edgebench/plugins/#plugins/#" -e "s#^$tree/edgebench/devices/#devices/#" \
        -e "s#^$tree/edgebench/#harness/#"
}
status=0
MYPYPATH="$tree" "$mypy" -p edgebench "$@" 2>&1 | to_source || status=1
# The runners' bare `import edgebench_agent` resolves to a shim that re-exports the agent as
# the package module (it imports its protocol relatively, which needs its package).
mkdir -p "$tree/runner-shim"
printf '%s\n' "from edgebench.agent.edgebench_agent import *  # noqa: F403" \
    "from edgebench.agent.edgebench_agent import _module_version  # noqa: F401" \
    > "$tree/runner-shim/edgebench_agent.py"
MYPYPATH="$tree/runner-shim:$tree" "$mypy" --config-file "" --check-untyped-defs \
    --ignore-missing-imports --no-warn-unused-ignores --follow-imports=silent \
    plugins/backends/*/*_runner.py || status=1
exit "$status"
