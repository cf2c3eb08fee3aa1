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

# sudo resets PATH (Debian's secure_path), so rustup's cargo, which lives
# in ~/.cargo/bin, is not on it: look there, first in root's home, then in
# the home of the user who ran sudo (their toolchain, read only: RUSTUP_HOME
# points at it, while downloads and builds stay root's, in root's CARGO_HOME).
if ! command -v cargo >/dev/null; then
    sudo_home=""
    if [ -n "${SUDO_USER:-}" ]; then
        sudo_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    fi
    if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    elif [ -n "$sudo_home" ] && [ -x "$sudo_home/.cargo/bin/cargo" ]; then
        export PATH="$sudo_home/.cargo/bin:$PATH"
        export RUSTUP_HOME="${RUSTUP_HOME:-$sudo_home/.rustup}"
    else
        echo "scripts/test.sh: cargo not found (not on PATH, nor in ~/.cargo/bin${SUDO_USER:+ of root or $SUDO_USER}): install Rust with rustup" >&2
        exit 1
    fi
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

log "build"
# The end-to-end tests run target/debug/fsvc-mount and fsvc-server, so the
# binaries are built before the tests.
cargo build --workspace

# The spawned server runs as uid 65534 and must be able to execute the
# built fsvc-server; a checkout in /root or in a 0700 home is out of its
# reach. Then the end-to-end tests run copies of the binaries from a
# directory it may enter (FSVC_BIN_DIR, see tests/src/util.rs).
built="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
if [ "$(id -u)" -eq 0 ] &&
    ! setpriv --reuid=65534 --regid=65534 --clear-groups -- test -x "$built/fsvc-server"; then
    bin_dir=$(mktemp -d /tmp/fsvc-test-bin.XXXXXX)
    trap 'rm -rf "$bin_dir"' EXIT
    chmod 755 "$bin_dir"
    find "$built" -maxdepth 1 -type f -name 'fsvc-*' -perm -u+x -exec cp {} "$bin_dir"/ \;
    export FSVC_BIN_DIR="$bin_dir"
    echo "$built is out of reach of uid 65534 (the spawned server's): the tests run copies in $bin_dir"
fi

log "test"
cargo test --workspace "$@"
