# Sourced by the scripts: make sure python3 can create a venv (fresh Debian lacks ensurepip).
# Installing python3-venv goes through apt_install_missing (scripts/_apt.sh): printed, and
# asked first when run by hand on a terminal.
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
ensure_venv_support() {
    local python="$1"
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        if ! apt_install_missing "$(basename "$0" .sh)" python3-venv \
                || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
            echo "$python cannot create virtual environments: install python3-venv" >&2
            exit 2
        fi
    fi
}
