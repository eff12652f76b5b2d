# Sourced by the scripts: make sure python3 can create a venv (fresh Debian lacks ensurepip).
ensure_venv_support() {
    local python="$1"
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        else
            echo "$python cannot create virtual environments: install python3-venv" >&2
            exit 2
        fi
    fi
}
