# SPDX-License-Identifier: LGPL-2.1-or-later
# Two versions of a root filesystem image made of real files from this
# machine's /usr (deterministic for a given /usr): v1 ~64 MiB of binaries,
# shared libraries and share data; v2 the same with ~5 % of the files
# changed. Shared by bench/release-bench.sh (delta figures) and the delta
# integration test. Needs: $W (scratch directory), $GEN (gen-image),
# mkfs.ext4, debugfs, tar, awk. Sourced.

: "${EPOCH:=1700000000}"                            # every timestamp in the images
: "${HASH_SEED:=5ea1b0a7-0000-4000-8000-000000000001}"
type die >/dev/null 2>&1 || die() { echo "rootfs: $*" >&2; exit 2; }
type bounded >/dev/null 2>&1 || bounded() { timeout --foreground -k 10 "${CMD_TIMEOUT:-600}" "$@"; }

# Candidate files: "size<TAB>path" under the given directories (relative to
# /), plain names only (debugfs commands quote them), sizes within bounds.
candidates() { # maxsize dir...
	local max=$1; shift
	(cd / && find "$@" -xdev -type f -size +0 -size -"$max"c -printf '%s\t%p\n' 2>/dev/null) |
		grep -E $'^[0-9]+\t[A-Za-z0-9._+/@-]+$' || true
}
# Deterministic pseudo-random order: a polynomial hash of "seed path" with
# awk arithmetic on doubles that stays exact (same order in mawk and gawk).
shuffle() { # seed  (stdin: size<TAB>path; stdout: same lines, reordered)
	awk -F '\t' -v seed="$1" 'BEGIN { for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i }
		{ h = seed; n = length($2)
		  for (i = 1; i <= n; i++) h = (h * 131 + ord[substr($2, i, 1)] + 1) % 2147483629
		  printf "%010d\t%s\t%s\n", h, $1, $2 }' | sort | cut -f 2-
}
# Picks files in shuffled order until `cap` bytes: selected lines to stdout,
# the rest (the pool for later versions) to the file $2.
pick() { # cap poolfile
	awk -F '\t' -v cap="$1" -v pool="$2" '{ if (sum + $1 <= cap) { sum += $1; print } else print > pool }'
}
copy_files() { # listfile destdir  (list: size<TAB>path relative to /)
	mkdir -p "$2"
	cut -f 2 "$1" | tar -C / --no-recursion -cf - -T - 2>/dev/null | tar -C "$2" -xf -
}
normalize_times() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }
# An ext4 image of the tree, laid out alike every time: fixed UUID, hash
# seed, time, 4 KiB blocks, and every inode's times set to EPOCH afterwards
# (mkfs -d copies ctime and atime from the source files).
make_ext4() { # tree image size_bytes
	local tree=$1 img=$2 size=$3
	rm -f "$img"
	truncate -s "$size" "$img"
	E2FSPROGS_FAKE_TIME=$EPOCH bounded mkfs.ext4 -q -F -b 4096 -I 256 -T default -O ^metadata_csum \
		-U clear -E root_owner=0:0,hash_seed=$HASH_SEED,lazy_itable_init=0,nodiscard \
		-d "$tree" "$img" >/dev/null
	(cd "$tree" && find . -mindepth 1 -printf '%P\n') |
		awk -v e="$EPOCH" '{ printf "sif \"/%s\" ctime @%s\nsif \"/%s\" atime @%s\n", $0, e, $0, e }' >"$W/debugfs.cmd"
	E2FSPROGS_FAKE_TIME=$EPOCH bounded debugfs -w -f "$W/debugfs.cmd" "$img" >/dev/null 2>&1
	rm -f "$W/debugfs.cmd"
	e2fsck_ok "$img"
}
e2fsck_ok() {
	command -v e2fsck >/dev/null || return 0
	e2fsck -fn "$1" >/dev/null 2>&1 || die "$1: e2fsck finds errors"
}
is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

# v1: ~64 MiB of /usr: binaries, shared libraries and share data.
build_rootfs_v1() { # tree poolfile
	local tree=$1 pool=$2
	{
		candidates 4000000 usr/bin usr/sbin | shuffle 11 | pick $((18 << 20)) "$pool.bin"
		candidates 6000000 usr/lib/x86_64-linux-gnu | grep -E '\.so' | shuffle 12 |
			pick $((28 << 20)) "$pool.lib"
		candidates 2000000 usr/share/doc usr/share/man usr/share/zoneinfo usr/share/i18n \
			usr/share/perl5 usr/share/misc usr/share/mime usr/share/common-licenses \
			usr/share/bash-completion usr/share/locale | shuffle 13 | pick $((18 << 20)) "$pool.share"
	} >"$W/v1.list"
	copy_files "$W/v1.list" "$tree"
	normalize_times "$tree"
}

# v2: a copy of v1 with ~5 % of the files changed, chosen with a fixed seed:
# 3 % edited (half overwrite 64 B..8 KiB in place, half get 64 B..4 KiB
# inserted), 1 % of the ELF files replaced by other binaries (a new build),
# 1 % more files added, 0.5 % deleted.
build_rootfs_v2() { # v1tree v2tree poolfile
	local t1=$1 t2=$2 pool=$3 f n n_edit n_repl n_add n_del i=0 r=0 d=0 e=0 off len size src
	cp -a "$t1" "$t2"
	"$GEN" --seed 99 --size $((1 << 20)) --kind random -o "$W/noise"
	n=$(wc -l <"$W/v1.list")
	n_edit=$(( (n * 3 + 50) / 100 )); n_repl=$(( (n + 50) / 100 )); n_add=$(( (n + 50) / 100 ))
	n_del=$(( (n + 100) / 200 ))
	shuffle 21 <"$W/v1.list" >"$W/v1.shuffled"
	shuffle 22 <"$pool.bin" >"$W/repl.list"
	: >"$W/v2.changes"
	: >"$W/repl.used"
	while IFS=$'\t' read -r size p; do
		f=$t2/$p
		i=$((i + 1))
		if [ "$e" -lt "$n_edit" ] && [ "$size" -ge 256 ]; then
			len=$(( 64 + (i * 7919) % 8128 )); [ "$len" -lt "$size" ] || len=$((size / 2))
			off=$(( (i * 104729) % (size - len) ))
			if [ $((e % 2)) = 0 ]; then
				dd if="$W/noise" of="$f" bs=64K iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc \
					skip=$(( (i * 4099) % (1 << 19) )) count="$len" seek="$off" status=none
				printf 'overwrite\t%d\t%s\tat %d\n' "$len" "$p" "$off" >>"$W/v2.changes"
			else
				len=$(( len / 2 + 32 ))
				{ head -c "$off" "$f"; dd if="$W/noise" bs=64K iflag=skip_bytes,count_bytes \
					skip=$(( (i * 4099) % (1 << 19) )) count="$len" status=none; tail -c +$((off + 1)) "$f"; } >"$W/edit"
				cat "$W/edit" >"$f"
				printf 'insert\t%d\t%s\tat %d\n' "$len" "$p" "$off" >>"$W/v2.changes"
			fi
			e=$((e + 1))
		elif [ "$r" -lt "$n_repl" ] && is_elf "$f"; then
			# a new build of a program is about as large as the old one
			src=$(awk -F '\t' -v s="$size" 'FILENAME == ARGV[1] { used[$0] = 1; next }
				!($2 in used) && $1 * 4 >= s * 3 && $1 * 3 <= s * 4 { print $2; exit }' \
				"$W/repl.used" "$W/repl.list")
			[ -n "$src" ] || continue
			echo "$src" >>"$W/repl.used"
			cat "/$src" >"$f"
			printf 'replace\t%d\t%s\tby /%s (was %d B)\n' "$(stat -c %s "$f")" "$p" "$src" "$size" >>"$W/v2.changes"
			r=$((r + 1))
		elif [ "$d" -lt "$n_del" ]; then
			rm -f "$f"
			printf 'delete\t0\t%s\n' "$p" >>"$W/v2.changes"
			d=$((d + 1))
		fi
		[ "$e" -lt "$n_edit" ] || [ "$r" -lt "$n_repl" ] || [ "$d" -lt "$n_del" ] || break
	done <"$W/v1.shuffled"
	cat "$pool.share" "$pool.lib" | awk -F '\t' '$1 <= 1048576' | shuffle 23 | sed -n "1,${n_add}p" >"$W/add.list"
	copy_files "$W/add.list" "$t2"
	awk -F '\t' '{ printf "add\t%s\t%s\n", $1, $2 }' "$W/add.list" >>"$W/v2.changes"
	rm -f "$W/noise" "$W/edit" "$W/v1.shuffled" "$W/repl.list" "$W/repl.used" "$W/add.list"
	normalize_times "$t2"
}

