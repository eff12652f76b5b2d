# Sourced by the scripts: install Debian packages the way the test suite promises.
#
#   apt_install_missing WHO PACKAGE...
#
# Installs nothing when every PACKAGE is already installed (and says so). Otherwise it names
# the missing packages and the exact apt-get commands, then
#   - in CI (CI set, non-empty), with stdin not a terminal, or with EDGEBENCH_YES=1:
#     runs them;
#   - by hand on a terminal: asks "Install them now? [y/N]" and installs only on y/yes.
# Not root or no apt-get: prints the commands to run as root and installs nothing.
# Returns 0 when the packages are there afterwards, 1 when they are still missing.
apt_install_missing() {
    local who="$1"
    shift
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "$who: system packages already installed, installing nothing: $*" >&2
        return 0
    fi
    local update=(apt-get update -qq)
    local install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
    echo "$who: missing system packages: ${missing[*]}" >&2
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "$who: install them as root with:" >&2
        echo "    ${update[*]} && ${install[*]}" >&2
        return 1
    fi
    echo "$who: will run, as root:" >&2
    echo "    DEBIAN_FRONTEND=noninteractive ${update[*]}" >&2
    echo "    DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
    # CI: any non-empty value, as for the tests' own prerequisite checks (tests/servers.py)
    if [ "${EDGEBENCH_YES:-}" = 1 ] || [ -n "${CI:-}" ] || [ ! -t 0 ]; then
        :  # CI, a pipe or an explicit yes: the commands above are the record of what ran
    else
        local answer=""
        read -r -p "$who: install them now? [y/N] " answer || answer=""
        case "$answer" in
            [yY]|[yY][eE][sS]) ;;
            *) echo "$who: not installing (EDGEBENCH_YES=1 skips this question)" >&2
               return 1 ;;
        esac
    fi
    # explicit checks: callers use `apt_install_missing ... || ...`, where set -e is off
    if ! DEBIAN_FRONTEND=noninteractive "${update[@]}" \
            || ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null; then
        echo "$who: apt-get failed; ${missing[*]} not installed" >&2
        return 1
    fi
    echo "$who: installed ${missing[*]}" >&2
}
