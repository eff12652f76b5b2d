#!/usr/bin/env bash
# pytest, where "no tests collected" (exit 5, e.g. a -k that matches nothing) is not a failure.
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest: no tests collected (exit 5), treated as success"
    exit 0
fi
exit "$rc"
