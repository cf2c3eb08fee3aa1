#!/usr/bin/env bash
# The README's test command: installs what the tests need (as root, on
# Debian/Ubuntu: apt), then builds and runs the whole suite. Run as root for
# the end-to-end tests (real mounts); without root the privileged tests say
# why they skip. .ci/run calls this, then clippy and rustfmt.
#
#   sudo scripts/test.sh            # FSVC_REQUIRE_PRIVILEGED=1: a skip fails
#   scripts/test.sh -- --test unmount   # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s ===\n' "$*"; }

log "install test dependencies"
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    # e2fsprogs: mkfs.ext4/e2fsck/debugfs (fixtures, oracles); fuse3 +
    # fuse2fs: /dev/fuse tools, fusermount3 and the peer used to validate
    # the harness; attr/acl: setfattr/setfacl for xattr and ACL fixtures;
    # strace: the sandbox-order test; systemd: systemd-socket-activate,
    # systemd-analyze, the fstab generator; util-linux + mount: losetup,
    # mount, umount, findmnt, setpriv; passwd: useradd for the user-mount
    # tests; man-db + groff-base: man -l on the man pages; make: the install
    # step; psmisc: fuser; kmod: modprobe for loop/fuse where they are modules.
    apt-get install -y -qq --no-install-recommends \
        e2fsprogs fuse3 fuse2fs attr acl strace systemd util-linux mount \
        passwd man-db groff-base make psmisc kmod coreutils >/dev/null
    modprobe loop 2>/dev/null || true
    modprobe fuse 2>/dev/null || true
    export FSVC_REQUIRE_PRIVILEGED="${FSVC_REQUIRE_PRIVILEGED:-1}"
else
    echo "not root (or no apt-get): skipping package installation" >&2
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

log "build"
# The end-to-end tests run target/debug/fsvc-mount and fsvc-server, so the
# binaries are built before the tests.
cargo build --workspace

log "test"
cargo test --workspace "$@"
