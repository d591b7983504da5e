#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Two daemons on loopback, no limits: a gateway seeding one release and a
# device fetching it, with the session encryption and every chunk verified.
# Prints throughput, CPU seconds per GiB on each side and the device's
# peak RSS (VmHWM).
#
# usage: bench/transfer-bench.sh BUILD-DIR [SIZE-MiB (default 1024)] [KIND (random|mixed)]
set -eu
B=$(cd "$1" && pwd)
MIB=${2:-1024}
KIND=${3:-random}
SHOAL=$B/cli/shoal SHOALD=$B/daemon/shoald GEN=$B/tests/gen-image
. "$(dirname "$0")/../tests/lib/tap.sh"
. "$(dirname "$0")/../tests/lib/fleet.sh"
fleet_setup

cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

"$GEN" --seed 51 --size $((MIB << 20)) --kind "$KIND" -o img
"$SHOAL" release create --image img --product demo --version 1 --counter 1 --key rel.key --keyring kr -o rel >/dev/null
PORTS=($(free_ports 2))
conf gw gateway "${PORTS[0]}" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel"
sed -i 's/log_level = debug/log_level = info/' gw.conf
start gw
gwpid=${PIDS[-1]}
conf dev device "${PORTS[1]}" fleet.key "gateway = 127.0.0.1:${PORTS[0]}" '[device]' "target = $T/dev.img"
sed -i 's/log_level = debug/log_level = info/' dev.conf
gw0=$(cpu_s "$gwpid")
t0=$(date +%s.%N)
start dev
devpid=${PIDS[-1]}
wait_for 900 is_complete dev
t1=$(date +%s.%N)
cmp -s dev.img img || { echo "IMAGE DIFFERS"; exit 1; }
gw1=$(cpu_s "$gwpid")
dv=$(cpu_s "$devpid")
awk -v mib="$MIB" -v t0="$t0" -v t1="$t1" -v g0="$gw0" -v g1="$gw1" -v d="$dv" -v h="$(hwm "$devpid")" -v gh="$(hwm "$gwpid")" 'BEGIN {
	s = t1 - t0; gib = mib / 1024
	printf "| %d MiB %s | %.1f s | %.0f MB/s | gateway %.2f CPU-s/GiB | device %.2f CPU-s/GiB | device peak RSS %.1f MiB | gateway peak RSS %.1f MiB |\n",
		mib, "'"$KIND"'", s, mib * 1.048576 / s, (g1 - g0) / gib, d / gib, h / 1024, gh / 1024
}'
grep -h "complete and verified" dev.log | sed 's/^/# /'
