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
