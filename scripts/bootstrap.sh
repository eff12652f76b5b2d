#!/usr/bin/env bash
# Create ./.venv with edgebench and the given extras, e.g.
#   scripts/bootstrap.sh onnxruntime,litert,ncnn   # what `edgebench run` needs
#   scripts/bootstrap.sh all,test             # everything, torch first
# Works on a fresh Debian 12 as root (installs python3-venv if the interpreter lacks it).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-onnxruntime,litert,ncnn}"
venv="${EDGEBENCH_VENV:-.venv}"
python="${PYTHON:-python3}"

. scripts/_venv.sh
ensure_venv_support "$python"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
case ",$extras," in
    *,export,*|*,all,*|*,executorch,*)
        # torch before anything that depends on it, or pip pulls a multi-GB CUDA build
        "${pip[@]}" "torch==2.14.1" "torchvision==0.29.1" ;;
esac
"${pip[@]}" -e ".[$extras]"
echo "bootstrap: $venv ready with edgebench[$extras]" >&2
