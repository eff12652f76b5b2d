#!/usr/bin/env bash
# Build (or reuse) an arm64 Debian 12 root with python3, numpy and onnxruntime: the emulated
# Raspberry Pi of the aarch64 test tier. Prints the root's path on stdout.
#
#   scripts/aarch64_root.sh [ROOT]        (default: /var/cache/edgebench-test/aarch64-root)
#
# Needs root, qemu-user-static, binfmt-support and debootstrap (scripts/setup_test_system.sh).
# The root is built in ROOT.partial and renamed when complete, so an interrupted build is
# never reused; a complete one is reused as long as its stamp matches RECIPE below. The
# aarch64 wheels come from PyPI through the host's pip (PYTHON, default python3).
set -euo pipefail
root="${1:-${EDGEBENCH_AARCH64_ROOT:-/var/cache/edgebench-test/aarch64-root}}"
python="${PYTHON:-python3}"
RECIPE="edgebench-aarch64-root v1: bookworm minbase python3 + numpy onnxruntime"

log() { echo "aarch64_root: $*" >&2; }

if [ -f "$root/.edgebench-ready" ] && [ "$(cat "$root/.edgebench-ready")" = "$RECIPE" ]; then
    echo "$root"
    exit 0
fi
[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot)"; exit 2; }
for tool in debootstrap qemu-aarch64-static update-binfmts; do
    command -v "$tool" >/dev/null || { log "$tool is missing: run scripts/setup_test_system.sh"; exit 2; }
done

# Let the kernel run aarch64 binaries through qemu (the F flag keeps it working in chroots).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

# The Debian mirror apt already uses (deb822 or one-line sources).
mirror="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
          /etc/apt/sources.list.d/*.list 2>/dev/null \
          | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

partial="$root.partial"
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
log "debootstrap arm64 bookworm from $mirror into $partial (a few minutes)"
start=$(date +%s)
debootstrap --arch=arm64 --variant=minbase --include=python3 bookworm "$partial" "$mirror" \
    > "$partial.log" 2>&1 || { log "debootstrap failed; see $partial.log"; tail -n 20 "$partial.log" >&2; exit 1; }
log "debootstrap done in $(( $(date +%s) - start )) s"

pyver="$(basename "$(ls -d "$partial"/usr/lib/python3.[0-9]* | head -n1)" | sed 's/python//')"
site="$partial/usr/local/lib/python$pyver/dist-packages"
wheels="$(dirname "$root")/wheels-aarch64-cp${pyver/./}"
mkdir -p "$wheels" "$site"
platforms=()
for tag in manylinux_2_36 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 \
           manylinux_2_27 manylinux_2_17 manylinux2014; do
    platforms+=(--platform "${tag}_aarch64")
done
pip_target=(--only-binary=:all: --python-version "$pyver" --implementation cp
            --abi "cp${pyver/./}" "${platforms[@]}")
log "aarch64 wheels for Python $pyver into $wheels"
"$python" -m pip download --quiet --disable-pip-version-check "${pip_target[@]}" \
    -d "$wheels" numpy onnxruntime
"$python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels" \
    "${pip_target[@]}" --target "$site" numpy onnxruntime

# Smoke test on real aarch64 code, with /proc but (on purpose) without /sys.
unshare --mount --propagation private sh -c \
    "mount -t proc proc '$partial/proc' && chroot '$partial' python3 -c \
     'import platform, numpy, onnxruntime; print(platform.machine(), numpy.__version__, onnxruntime.__version__)'" >&2
echo "$RECIPE" > "$partial/.edgebench-ready"
rm -rf "$root" "$partial.log"
mv "$partial" "$root"
log "ready: $root"
echo "$root"
