#!/usr/bin/env bash
# System packages the tests need: a real OpenSSH server and client, Debian's adb, and
# qemu-user + binfmt + debootstrap for the emulated aarch64 Pi (remote-device tiers), and
# Chromium for the HTML report's browser test. Idempotent and quick
# when everything is there (one dpkg query); needs root and apt-get to install anything.
# Called by scripts/test.sh before tox.
set -euo pipefail
packages=(openssh-server openssh-client adb qemu-user-static binfmt-support debootstrap
          iproute2 util-linux procps chromium)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "setup_test_system: missing ${missing[*]}; install them as root (the remote" \
             "device tests skip without them, and fail under CI)" >&2
        exit 0
    fi
    echo "setup_test_system: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd  # sshd's privilege separation dir (no systemd to make it here)
    # qemu for aarch64 binaries, also inside chroots (update-binfmts registers it with F)
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64 2>/dev/null || true
    fi
fi
