#!/usr/bin/env bash
# Makes the seed corpus for the `image` fuzz target: tiny images (256 KiB,
# 1 KiB blocks) made by mkfs.ext4 -d from a small varied tree, one per
# feature set, so the fuzzer starts past the superblock checks. Seeds are
# made here, never committed (no binary images in the repo).
# Usage: fuzz/seed.sh  (then: RUSTC_BOOTSTRAP=1 cargo fuzz run image)
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/image
mkdir -p "$out"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/d/e" "$tree/many"
printf 'hello\n' > "$tree/small"
head -c 20000 /dev/urandom > "$tree/d/mid"
truncate -s 100000 "$tree/d/sparse"
printf 'x' | dd of="$tree/d/sparse" bs=1 seek=90000 conv=notrunc status=none
ln -s small "$tree/fast"
ln -s "$(printf 'l%.0s' $(seq 80))" "$tree/slow"
ln "$tree/small" "$tree/d/e/hard"
mkfifo "$tree/fifo"
for i in $(seq 60); do : > "$tree/many/name-$i-$(printf 'n%.0s' $(seq 40))"; done
setfattr -n user.k -v value "$tree/small" 2>/dev/null || true
i=0
for opts in "-t ext4" "-t ext4 -O ^metadata_csum" "-t ext4 -O inline_data" \
            "-t ext3" "-t ext2" "-t ext4 -O ^64bit,^flex_bg" "-t ext4 -I 128"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    mkfs.ext4 -q -F $opts -b 1024 -N 96 -d "$tree" "$out/seed-$i" 384k
done
ls -l "$out"

# Seeds for the `journal` and `recover` targets: small images the kernel
# left with a dirty journal (needs root: loop mounts). The image is copied
# right after an EXT4_IOC_SHUTDOWN with NOLOGFLUSH, before the unmount, so
# the newest metadata is only in the journal. `recover` gets the image;
# `journal` gets byte 0 = block size selector (0: 1 KiB, 1: 4 KiB) and the
# used part of the journal (debugfs dumps inode 8).
if [ "$(id -u)" != 0 ]; then
    echo "not root: no journal seeds" >&2
    exit 0
fi
mkdir -p corpus/journal corpus/recover
mnt=$(mktemp -d)
shut=$(mktemp)
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tree" "$mnt" "$shut"' EXIT
cat > "$shut" <<'PY'
import fcntl, os, struct, sys
for root, dirs, files in os.walk(sys.argv[1]):
    for n in files + dirs:
        p = os.path.join(root, n)
        if os.path.isfile(p) or os.path.isdir(p):
            fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.ioctl(fd, 0x8004587D, struct.pack('I', 2))  # EXT4_IOC_SHUTDOWN, NOLOGFLUSH
PY
i=0
for spec in "ext4 -b 1024|" "ext4 -b 1024 -O ^metadata_csum|journal_checksum" \
            "ext3 -b 1024|" "ext4 -b 4096 -O ^64bit|" \
            "ext4 -b 1024|journal_async_commit,data=writeback"; do
    i=$((i + 1))
    opts=${spec%|*}; mopts=${spec#*|}
    img=$(mktemp)
    # shellcheck disable=SC2086
    mkfs.ext4 -q -F -t $opts -J size=1 "$img" 3m 2>/dev/null ||
        mkfs.ext4 -q -F -t $opts "$img" 8m
    mount -o "loop,noatime${mopts:+,$mopts}" "$img" "$mnt"
    cp -r "$tree"/. "$mnt"/ 2>/dev/null || true
    rm -rf "$mnt/many"
    python3 "$shut" "$mnt"
    cp "$img" "corpus/recover/seed-$i"
    umount "$mnt"
    bs=$(dumpe2fs -h "corpus/recover/seed-$i" 2>/dev/null | awk '/^Block size/ {print $3}')
    debugfs -R "dump <8> $img.j" "corpus/recover/seed-$i" 2>/dev/null
    { if [ "$bs" = 1024 ]; then printf '\0'; else printf '\1'; fi
      head -c $((256 * bs)) "$img.j"; } > "corpus/journal/seed-$i"
    rm -f "$img" "$img.j"
done
ls -l corpus/journal corpus/recover
