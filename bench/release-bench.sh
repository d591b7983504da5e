#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark of `shoal release create` against `casync make` (a benchmark, not
# a test: it prints figures and never fails on them).
#
#   1. delta size: two ext4 root file system images made from real files of
#      this machine's /usr, the second with ~5 % of its files changed; the
#      bytes of the chunks v2 adds to a store that holds v1, at 64 KiB and
#      16 KiB average chunks, for shoal and casync (both zstd level 3);
#   2. throughput: release create / casync make of one image (default 1 GiB)
#      into an empty store and into a store that already holds every chunk,
#      side by side, RUNS times, median;
#   3. memory: peak RSS of those shoal runs.
#
# usage: bench/release-bench.sh [BUILD_DIR [WORK_DIR [IMAGE_SIZE]]]
#   BUILD_DIR   meson build directory (default: build-bench next to bench/)
#   WORK_DIR    a private directory is made inside it (default: /tmp) and
#               removed at the end, whatever happens (WORK_DIR too if this
#               script made it)
#   IMAGE_SIZE  size of the throughput image (default 1G; K, M, G suffixes)
#
# environment:
#   PARTS=delta,throughput     which parts to run (default both; memory
#                              comes with throughput)
#   RUNS=3                     runs per throughput figure (median reported)
#   IMAGE_KIND=mixed|usr       throughput image: `gen-image --kind mixed`
#                              (default) or an ext4 file system of real
#                              /usr files filling ~75 % of it
#   JOBS=                      shoal --jobs (default: shoal's, nproc)
#   NICE=0                     nice(1) adjustment of the measured commands
#                              (e.g. -10 as root on a machine shared with
#                              other work: fewer outliers, same for both)
#   SETTLE=60                  seconds to wait (after a sync) before the
#                              timed runs, so files deleted just before on
#                              the same file system do not slow them
#   CMD_TIMEOUT=900            seconds any one command may take
#   TOTAL_TIMEOUT=5400         seconds the whole script may take
#   KEEP=                      set: leave the work dir (debugging)
#   KEEP_GOING=1               a failed casync/shoal run prints "failed"
#                              instead of stopping the script
#
# Figures go to stdout as Markdown; progress goes to stderr. Before every
# timed throughput run the page cache is dropped (echo 3 >
# /proc/sys/vm/drop_caches) when allowed; otherwise the image is read once
# right before (warm cache). The output says which. Needs about
# IMAGE_SIZE x (2 RUNS + 2) free in WORK_DIR (~8 GiB for 1G, 3 runs).
set -Eeuo pipefail
export LC_ALL=C
trap 'echo "release-bench: line $LINENO failed: $BASH_COMMAND" >&2' ERR

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build-bench}
WORK_PARENT=${2:-/tmp}
IMAGE_SIZE=${3:-1G}
PARTS=${PARTS:-delta,throughput}
RUNS=${RUNS:-3}
IMAGE_KIND=${IMAGE_KIND:-mixed}
CMD_TIMEOUT=${CMD_TIMEOUT:-900}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-5400}
EPOCH=1700000000                       # every timestamp in the images
HASH_SEED=5ea1b0a7-0000-4000-8000-000000000001

# Bound the whole run: re-run this script under timeout(1); on expiry (or
# ^C) the trap below stops the running measurement and cleans up.
if [ -z "${RELEASE_BENCH_TIMED:-}" ]; then
	export RELEASE_BENCH_TIMED=1
	exec timeout --foreground -k 60 "$TOTAL_TIMEOUT" "$0" "$@"
fi

die() { echo "release-bench: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory $1"
SHOAL=$BUILD/cli/shoal
GEN=$BUILD/tests/gen-image
[ -x "$SHOAL" ] || die "$SHOAL not built (ninja -C $BUILD)"
[ -x "$GEN" ] || die "$GEN not built (meson setup with tests enabled)"
for t in casync zstd jq mkfs.ext4 debugfs od awk timeout /usr/bin/time tar; do
	command -v "$t" >/dev/null || die "$t is needed"
done
case $IMAGE_SIZE in
*[kK]) IMAGE_BYTES=$(( ${IMAGE_SIZE%?} << 10 )) ;;
*[mM]) IMAGE_BYTES=$(( ${IMAGE_SIZE%?} << 20 )) ;;
*[gG]) IMAGE_BYTES=$(( ${IMAGE_SIZE%?} << 30 )) ;;
*) IMAGE_BYTES=$IMAGE_SIZE ;;
esac
[ "$IMAGE_BYTES" -ge $((16 << 20)) ] 2>/dev/null || die "image size must be at least 16M"
MADE_PARENT=                           # the topmost directory made here
d=$WORK_PARENT
while [ ! -e "$d" ]; do MADE_PARENT=$d; d=$(dirname "$d"); done
mkdir -p "$WORK_PARENT"
WORK_PARENT=$(cd "$WORK_PARENT" && pwd)
[ -z "$MADE_PARENT" ] || MADE_PARENT=$(cd "$MADE_PARENT" && pwd)
W=$(mktemp -d "$WORK_PARENT/shoal-bench.XXXXXX")
CHILD=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$CHILD" ]; then
		kill -TERM -- -"$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	cd /
	if [ -n "${KEEP:-}" ]; then
		echo "release-bench: KEEP is set, leaving $W" >&2
	else
		chmod -R u+w "$W" 2>/dev/null || true
		rm -rf "$W"
		d=$WORK_PARENT
		while [ -n "$MADE_PARENT" ] && rmdir "$d" 2>/dev/null && [ "$d" != "$MADE_PARENT" ]; do
			d=$(dirname "$d")
		done
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$W"
export SHOAL_NO_PROGRESS=1 SOURCE_DATE_EPOCH=$EPOCH

# Runs CMD... under a timeout, measured by /usr/bin/time into $W/t.last:
# "wall user sys maxrss_kib"; stdout and stderr go to $W/out.last. It runs
# in a session of its own that the trap can stop (bash runs traps only
# between foreground commands, but `wait` it interrupts).
timed() {
	local rc=0
	setsid nice -n "${NICE:-0}" /usr/bin/time -f '%e %U %S %M' -o "$W/t.last" \
		timeout --foreground -k 10 "$CMD_TIMEOUT" "$@" >"$W/out.last" 2>&1 </dev/null &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	return "$rc"
}
bounded() { timeout --foreground -k 10 "$CMD_TIMEOUT" "$@"; }
fail_or_note() { # what
	if [ "${KEEP_GOING:-1}" = 1 ]; then
		log "FAILED: $1 (see below)"; tail -5 "$W/out.last" >&2; return 0
	fi
	cat "$W/out.last" >&2; die "$1 failed"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
free_kib() { df -Pk "$W" | awk 'NR == 2 { print $4 }'; }
need_space() { # bytes
	local have; have=$(( $(free_kib) * 1024 ))
	[ "$have" -gt "$1" ] || die "$W: need $(mb "$1") MB free, have $(mb "$have") MB"
}

# ---- images from real files --------------------------------------------
. "$(dirname "$(readlink -f "$0")")/lib/rootfs.sh"

# ---- chunk tables ------------------------------------------------------
# "id length" for every chunk of a shoal release directory
shoal_chunks() { "$SHOAL" release show --json "$1" | jq -r '.chunks[] | "\(.id) \(.length)"'; }
# "id length" for every chunk of a casync blob index (.caibx): a 48-byte
# index header, a 16-byte table header, 40-byte items (end offset, id) and
# a 40-byte tail.
casync_chunks() {
	local items; items=$(( ($(stat -c %s "$1") - 64 - 40) / 40 ))
	od -An -v -tx1 -w40 -j64 -N$((items * 40)) "$1" |
		awk 'function byte(s) { return (index("0123456789abcdef", substr(s, 1, 1)) - 1) * 16 + index("0123456789abcdef", substr(s, 2, 1)) - 1 }
		     { off = 0; m = 1; for (i = 1; i <= 8; i++) { off += byte($i) * m; m *= 256 }
		       id = ""; for (i = 9; i <= 40; i++) id = id $i
		       printf "%s %.0f\n", id, off - prev; prev = off }'
}
# count and plain bytes of the distinct chunks of table $2 not in table $1
new_chunks() {
	awk 'FILENAME == ARGV[1] { old[$1] = 1; next } !($1 in old) && !($1 in seen) { seen[$1] = 1; n++; b += $2 }
	     END { printf "%d %.0f\n", n, b }' "$1" "$2"
}
chunk_stats() { awk '{ n++; s += $2 } END { printf "%d (%.1f KiB)", n, s / n / 1024 }' "$1"; }
# "name size" of every stored chunk file
store_files() { find "$1" -type f -name "*.$2" -printf '%f %s\n' | sort || true; }
added_bytes() { # before after
	awk 'FILENAME == ARGV[1] { old[$1] = 1; next } !($1 in old) { n++; b += $2 } END { printf "%d %.0f\n", n, b }' "$1" "$2"
}

# ---- part 1: delta size ------------------------------------------------
delta_part() {
	local avg min max k1 k2 n b cn cb sn sb
	need_space $((1200 << 20))
	log "delta: building the v1 and v2 trees from /usr"
	build_rootfs_v1 "$W/tree1" "$W/pool"
	build_rootfs_v2 "$W/tree1" "$W/tree2" "$W/pool"
	local nfiles1 nfiles2 bytes1 bytes2
	nfiles1=$(find "$W/tree1" -type f | wc -l); bytes1=$(du -sb --apparent-size "$W/tree1" | cut -f1)
	nfiles2=$(find "$W/tree2" -type f | wc -l); bytes2=$(du -sb --apparent-size "$W/tree2" | cut -f1)
	log "delta: making the ext4 images (100 MiB)"
	make_ext4 "$W/tree1" "$W/v1.img" $((100 << 20))
	make_ext4 "$W/tree2" "$W/v2.img" $((100 << 20))
	# the same tree must give the same image, or the delta measures noise
	make_ext4 "$W/tree1" "$W/v1-again.img" $((100 << 20))
	cmp -s "$W/v1.img" "$W/v1-again.img" || die "mkfs.ext4 -d is not reproducible here: the delta would be meaningless"
	rm -f "$W/v1-again.img"
	rm -rf "$W/tree1" "$W/tree2"
	"$SHOAL" keygen -o "$W/k" >/dev/null

	local z3 zpatch
	z3=$(bounded zstd -3 -q -c "$W/v2.img" | wc -c)
	zpatch=$(bounded zstd -3 -q --patch-from="$W/v1.img" -c "$W/v2.img" 2>/dev/null | wc -c)

	{
		echo "### Delta: ext4 root file system, v1 -> v2"
		echo
		echo "v1: $nfiles1 files, $(mb "$bytes1") MB of /usr (binaries, libraries, share data) in a 100 MiB ext4 image;"
		echo "v2: $nfiles2 files, $(mb "$bytes2") MB; $(wc -l <"$W/v2.changes") files changed (seeded choice):"
		awk -F '\t' '{ n[$1]++; b[$1] += $2 } END {
			printf "%d partly overwritten (%.1f KB), %d with bytes inserted (%.1f KB), ", n["overwrite"], b["overwrite"] / 1e3, n["insert"], b["insert"] / 1e3
			printf "%d binaries replaced by others of similar size (%.2f MB), %d added (%.2f MB), %d deleted;\n", n["replace"], b["replace"] / 1e6, n["add"], b["add"] / 1e6, n["delete"]
			printf "%.2f MB of new file content in all; the files after each change move in the image.\n", (b["overwrite"] + b["insert"] + b["replace"] + b["add"]) / 1e6 }' "$W/v2.changes"
		echo
		echo "| avg chunk | tool | v2 chunks (mean size) | new chunks (= requests) | plain bytes of new chunks | compressed bytes added to the store |"
		echo "|---|---|---|---|---|---|"
	} >"$W/delta.md"
	for avg in 65536 16384; do
		min=$((avg / 4)); max=$((avg * 4))
		log "delta: shoal, average $((avg >> 10)) KiB"
		if ! timed "$SHOAL" release create --image "$W/v1.img" --product bench --version 1 --counter 1 \
			--key "$W/k.key" --chunking "$min,$avg,$max" -o "$W/s$avg"; then
			fail_or_note "shoal release create v1"; continue
		fi
		shoal_chunks "$W/s$avg" >"$W/s1.chunks"
		store_files "$W/s$avg/chunks" zst >"$W/s1.files"
		if ! timed "$SHOAL" release create --image "$W/v2.img" --product bench --version 2 --counter 2 \
			--key "$W/k.key" --chunking "$min,$avg,$max" --force -o "$W/s$avg"; then
			fail_or_note "shoal release create v2"; continue
		fi
		grep '^store:' "$W/out.last" | sed 's/^/    shoal says: /' >&2
		shoal_chunks "$W/s$avg" >"$W/s2.chunks"
		store_files "$W/s$avg/chunks" zst >"$W/s2.files"
		read -r sn sb < <(new_chunks "$W/s1.chunks" "$W/s2.chunks")
		read -r n b < <(added_bytes "$W/s1.files" "$W/s2.files")
		[ "$n" = "$sn" ] || log "note: shoal stored $n chunk files for $sn new chunks"

		log "delta: casync, average $((avg >> 10)) KiB"
		mkdir -p "$W/c$avg"
		if ! timed casync make --compression=zstd --chunk-size="$avg" --store="$W/c$avg" "$W/c1.caibx" "$W/v1.img"; then
			fail_or_note "casync make v1"; continue
		fi
		store_files "$W/c$avg" cacnk >"$W/c1.files"
		if ! timed casync make --compression=zstd --chunk-size="$avg" --store="$W/c$avg" "$W/c2.caibx" "$W/v2.img"; then
			fail_or_note "casync make v2"; continue
		fi
		store_files "$W/c$avg" cacnk >"$W/c2.files"
		casync_chunks "$W/c1.caibx" >"$W/c1.chunks"
		casync_chunks "$W/c2.caibx" >"$W/c2.chunks"
		read -r cn cb < <(new_chunks "$W/c1.chunks" "$W/c2.chunks")
		read -r k1 k2 < <(added_bytes "$W/c1.files" "$W/c2.files")
		[ "$k1" = "$cn" ] || log "note: casync stored $k1 chunk files for $cn new chunks"
		# the sum of chunk lengths must be the image: the parsers are right
		[ "$(awk '{ s += $2 } END { printf "%.0f", s }' "$W/c2.chunks")" = $((100 << 20)) ] ||
			die "casync index parse: chunk lengths do not add up to the image"
		[ "$(awk '{ s += $2 } END { printf "%.0f", s }' "$W/s2.chunks")" = $((100 << 20)) ] ||
			die "shoal chunk table: chunk lengths do not add up to the image"

		printf '| %d KiB | shoal | %s | %d | %s MB | %s MB |\n' $((avg >> 10)) "$(chunk_stats "$W/s2.chunks")" "$sn" "$(mb "$sb")" "$(mb "$b")" >>"$W/delta.md"
		printf '| %d KiB | casync | %s | %d | %s MB | %s MB |\n' $((avg >> 10)) "$(chunk_stats "$W/c2.chunks")" "$cn" "$(mb "$cb")" "$(mb "$k2")" >>"$W/delta.md"
		printf '| %d KiB | shoal / casync | | %s | %s | %s |\n' $((avg >> 10)) \
			"$(awk -v a="$sn" -v b="$cn" 'BEGIN { printf "%.2f", a / b }')" \
			"$(awk -v a="$sb" -v b="$cb" 'BEGIN { printf "%.2f", a / b }')" \
			"$(awk -v a="$b" -v b="$k2" 'BEGIN { printf "%.2f", a / b }')" >>"$W/delta.md"
		echo "delta $((avg >> 10)) shoal $sb $b casync $cb $k2" >>"$W/verdicts"
		rm -rf "$W/s$avg" "$W/c$avg" "$W"/c?.caibx "$W"/[sc]?.chunks "$W"/[sc]?.files
	done
	{
		echo "| - | whole v2, zstd -3 | - | 1 | $(mb "$(stat -c %s "$W/v2.img")") MB | $(mb "$z3") MB |"
		echo "| - | zstd -3 --patch-from=v1 (a binary delta, for scale) | - | - | - | $(mb "$zpatch") MB |"
		echo
	} >>"$W/delta.md"
	cat "$W/delta.md"
	rm -f "$W/v1.img" "$W/v2.img" "$W"/pool* "$W/v1.list" "$W/k.key" "$W/k.pub"
}

# ---- part 2 and 3: throughput and memory -------------------------------
make_throughput_image() {
	case $IMAGE_KIND in
	mixed)
		bounded "$GEN" --seed 1 --size "$IMAGE_BYTES" --kind mixed -o "$W/big.img"
		IMAGE_DESC="gen-image --seed 1 --kind mixed --size $IMAGE_SIZE (64 KiB blocks: 1/4 zeros, 1/4 repeated text, 1/2 random)"
		;;
	usr)
		candidates 8000000 usr/bin usr/sbin usr/lib usr/share usr/libexec | shuffle 31 |
			pick $((IMAGE_BYTES * 7 / 10)) /dev/null >"$W/big.list"
		copy_files "$W/big.list" "$W/bigtree"
		normalize_times "$W/bigtree"
		make_ext4 "$W/bigtree" "$W/big.img" "$IMAGE_BYTES"
		IMAGE_DESC="ext4 file system of $(wc -l <"$W/big.list") files from /usr ($(mb "$(du -sb --apparent-size "$W/bigtree" | cut -f1)") MB), $IMAGE_SIZE image"
		# the tree stays until the timed runs are over (see run_one)
		;;
	*) die "IMAGE_KIND is mixed or usr" ;;
	esac
}

throughput_part() {
	local run tool order jobs_opt=()
	need_space $(( IMAGE_BYTES * (2 * RUNS + 2) ))
	log "throughput: making the $IMAGE_SIZE image ($IMAGE_KIND)"
	make_throughput_image
	"$SHOAL" keygen -o "$W/k" >/dev/null
	[ -z "${JOBS:-}" ] || jobs_opt=(--jobs "$JOBS")
	if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		CACHE_NOTE="page cache dropped before every run"
		DROP=1
	else
		CACHE_NOTE="page cache could not be dropped (no permission): the image was read once before every run (warm cache)"
		DROP=0
	fi
	: >"$W/results"
	if [ "${SETTLE:-60}" -gt 0 ]; then
		log "throughput: sync, then ${SETTLE:-60} s for earlier deletions to age (see below)"
		sync
		sleep "${SETTLE:-60}" & wait $!
	fi
	# One store per run and tool, all kept until the end, and nothing else
	# deleted before the timed runs: on ext4 without a journal, creating
	# files within a minute (six if not yet synced) of deleting thousands
	# makes every inode allocation probe the recently freed inodes
	# (recently_deleted() in ext4_create), which would time the file
	# system, not the tools. Do not start this script right after a
	# previous run of it (or anything else that deleted many files on the
	# same file system) either: SETTLE covers deletions up to its start.
	run_one() { # tool phase run
		local tool=$1 phase=$2 run=$3 extra=()
		[ "$phase" = full ] && extra=(--force)
		sync
		if [ "$DROP" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; else cat "$W/big.img" >/dev/null; fi
		case $tool in
		shoal)
			timed "$SHOAL" release create --image "$W/big.img" --product bench --version "$run" --counter "$run" \
				--key "$W/k.key" --zstd-level 3 "${jobs_opt[@]}" "${extra[@]}" -o "$W/shoal$run" ||
				{ fail_or_note "shoal release create ($phase, run $run)"; return 0; }
			;;
		shoal-j1)
			timed "$SHOAL" release create --image "$W/big.img" --product bench --version "$run" --counter "$run" \
				--key "$W/k.key" --zstd-level 3 --jobs 1 "${extra[@]}" -o "$W/shoalj1-$run" ||
				{ fail_or_note "shoal release create --jobs 1 ($phase, run $run)"; return 0; }
			;;
		casync)
			mkdir -p "$W/casync$run"
			timed casync make --compression=zstd --chunk-size=65536 --store="$W/casync$run" \
				"$W/casync$run.caibx" "$W/big.img" ||
				{ fail_or_note "casync make ($phase, run $run)"; return 0; }
			;;
		esac
		echo "$tool $phase $run $(cat "$W/t.last")" >>"$W/results"
		log "  $tool $phase run $run: $(awk '{ printf "%.2f s wall, %.2f user, %.2f sys, %d MiB RSS", $1, $2, $3, $4 / 1024 }' "$W/t.last")"
		if [ "$tool" = casync ]; then
			# casync leaves its chunks to the page cache; shoal syncs its
			# store (syncfs) before it writes the manifest. Time that too.
			/usr/bin/time -f '%e' -o "$W/t.sync" sync -f "$W/casync$run"
			echo "casync-sync $phase $run $(cat "$W/t.sync") 0 0 0" >>"$W/results"
		fi
	}
	for run in $(seq 1 "$RUNS"); do
		# alternate who goes first, so neither always gets the quieter slot
		if [ $((run % 2)) = 1 ]; then order="shoal casync shoal-j1"; else order="casync shoal-j1 shoal"; fi
		log "throughput: run $run of $RUNS, empty stores ($order)"
		for tool in $order; do run_one "$tool" empty "$run"; done
	done
	for run in $(seq 1 "$RUNS"); do
		if [ $((run % 2)) = 1 ]; then order="shoal casync"; else order="casync shoal"; fi
		log "throughput: run $run of $RUNS, stores already holding every chunk ($order)"
		for tool in $order; do run_one "$tool" full "$run"; done
	done
	local stored_shoal stored_casync
	stored_shoal=$(store_files "$W/shoal1/chunks" zst 2>/dev/null | awk '{ s += $2 } END { printf "%.0f", s }')
	stored_casync=$(store_files "$W/casync1" cacnk 2>/dev/null | awk '{ s += $2 } END { printf "%.0f", s }')

	stat_of() { # tool phase field(1 wall, 2 user, 3 sys, 4 rss)
		awk -v t="$1" -v p="$2" -v f="$3" '$1 == t && $2 == p { print $(3 + f) }' "$W/results" | median
	}
	cpu_of() { # tool phase: median of user + sys
		awk -v t="$1" -v p="$2" '$1 == t && $2 == p { print $5 + $6 }' "$W/results" | median
	}
	row() { # label tool phase
		local wall; wall=$(stat_of "$2" "$3" 1)
		[ "$wall" != - ] || { echo "| $1 | failed | | | | |"; return; }
		printf '| %s | %s s | %s MB/s | %s s | %s s | %s MiB |\n' "$1" "$wall" \
			"$(awk -v b="$IMAGE_BYTES" -v w="$wall" 'BEGIN { printf "%.0f", b / w / 1e6 }')" \
			"$(stat_of "$2" "$3" 2)" "$(stat_of "$2" "$3" 3)" \
			"$(awk -v k="$(stat_of "$2" "$3" 4)" 'BEGIN { printf "%.1f", k / 1024 }')"
	}
	{
		echo "### Throughput: one $IMAGE_SIZE image, average 64 KiB chunks, zstd level 3"
		echo
		echo "Image: $IMAGE_DESC. Median of $RUNS runs, shoal and casync alternating; $CACHE_NOTE."
		echo "shoal: \`release create\` with ${JOBS:-the default} --jobs ($(nproc) CPUs), syncs the store before writing the manifest."
		echo "casync: \`make --compression=zstd --chunk-size=65536\` (one thread, no sync)."
		[ "${NICE:-0}" = 0 ] || echo "Both ran under \`nice -n $NICE\`."
		echo "Stored: shoal $(mb "$stored_shoal") MB, casync $(mb "$stored_casync") MB."
		echo
		echo "| run | wall (median) | MB/s | user | sys | peak RSS |"
		echo "|---|---|---|---|---|---|"
		row "shoal, empty store" shoal empty
		row "shoal --jobs 1, empty store" shoal-j1 empty
		row "casync, empty store" casync empty
		echo "| casync, then \`sync -f\` on its store | +$(stat_of casync-sync empty 1) s | | | | |"
		row "shoal, store holds every chunk" shoal full
		row "casync, store holds every chunk" casync full
		echo
		echo "Load average during the runs: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at the end)."
		echo
	} >"$W/throughput.md"
	cat "$W/throughput.md"
	local se ce sf cf rss
	se=$(stat_of shoal empty 1); ce=$(stat_of casync empty 1)
	sf=$(stat_of shoal full 1); cf=$(stat_of casync full 1)
	rss=$(awk '$1 ~ /^shoal/ { if ($7 > m) m = $7 } END { print m + 0 }' "$W/results")
	echo "speed empty $se $ce $(cpu_of shoal empty) $(cpu_of casync empty)" >>"$W/verdicts"
	echo "speed full $sf $cf $(cpu_of shoal full) $(cpu_of casync full)" >>"$W/verdicts"
	echo "rss $rss" >>"$W/verdicts"
	echo "### Raw runs (tool phase run wall user sys maxrss_kib)"
	echo
	sed 's/^/    /' "$W/results"
	echo
	log "throughput: disk use of the work dir: $(du -sh "$W" | cut -f1); removing the stores"
	rm -rf "$W"/shoal* "$W"/casync* "$W/big.img" "$W/bigtree" "$W/big.list" "$W/k.key" "$W/k.pub" "$W/results"
}

# ---- main --------------------------------------------------------------
: >"$W/verdicts"
echo "## shoal release create vs casync make"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
echo "$(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, kernel $(uname -r); $("$SHOAL" --version 2>/dev/null | sed -n 1p),"
echo "$(casync --version | sed -n 1p), zstd $(zstd -V | grep -o 'v[0-9.]*' | sed -n 1p). Work dir on $(df -PT "$W" | awk 'NR == 2 { print $2 }')."
echo "Figures move from run to run (shared machine): compare within one run."
echo
# throughput first: the delta part deletes thousands of files, and ext4
# without a journal then probes recently freed inodes on every create for a
# minute or more, which would slow the first timed runs
case ",$PARTS," in *,throughput,*) throughput_part ;; esac
case ",$PARTS," in *,delta,*) delta_part ;; esac

echo "### Criteria"
echo
awk '
$1 == "delta" { printf "- delta, %s KiB chunks: shoal adds %.2f MB compressed (%.2f MB plain), casync %.2f MB (%.2f MB plain): %s\n",
	$2, $5 / 1e6, $4 / 1e6, $8 / 1e6, $7 / 1e6, ($5 <= $8 ? "holds (shoal <= casync)" : "FAILS (shoal > casync)") }
$1 == "speed" && $3 != "-" && $4 != "-" { r = $4 / $3
	printf "- throughput, %s store: shoal %.2f s, casync %.2f s: shoal is %.2fx casync%s;", $2, $3, $4, r,
	($2 == "empty" ? (r >= 1.5 ? ": holds (>= 1.5x)" : ": FAILS (< 1.5x)") : " (for information)")
	printf " CPU time (user + sys): shoal %.2f s, casync %.2f s\n", $5, $6 }
$1 == "rss" { printf "- memory: peak RSS of shoal release create %.1f MiB: %s\n", $2 / 1024, ($2 < 65536 ? "holds (< 64 MiB)" : "FAILS (>= 64 MiB)") }
' "$W/verdicts"
