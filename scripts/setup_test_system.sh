#!/usr/bin/env bash
# System packages the tests need: a real OpenSSH server and client, Debian's adb, and
# qemu-user + binfmt + debootstrap for the emulated aarch64 Pi (remote-device tiers), and
# Chromium for the HTML report's browser test. Called by scripts/test.sh before tox.
#
#   scripts/setup_test_system.sh [--yes]
#
# Installs nothing when they are all there (one dpkg query each; it says so). Otherwise it
# prints the missing packages and the exact apt-get commands, then runs them in CI (CI set),
# when stdin is not a terminal, or with --yes / EDGEBENCH_YES=1; by hand on a terminal it
# asks first (default no). Without them the remote-device tests skip, and fail under CI.
# As root it also makes sshd's /run/sshd and registers qemu-aarch64 with binfmt_misc.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = --yes ] && export EDGEBENCH_YES=1
. scripts/_apt.sh
packages=(openssh-server openssh-client adb qemu-user-static binfmt-support debootstrap
          iproute2 util-linux procps chromium)
apt_install_missing setup_test_system "${packages[@]}" \
    || echo "setup_test_system: the tests that need them will skip (and fail under CI)" >&2
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd  # sshd's privilege separation dir (no systemd to make it here)
    # qemu for aarch64 binaries, also inside chroots (update-binfmts registers it with F)
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v update-binfmts >/dev/null
    then
        update-binfmts --enable qemu-aarch64 2>/dev/null || true
    fi
fi
