#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Seed offload: eight devices and a gateway whose upload is limited, all on
# loopback with static peers. Every device ends with the image, and the
# gateway sends about one copy of it: the devices trade the rest among
# themselves. (The namespace rig with tc-shaped links and mDNS measures the
# same thing against BitTorrent in bench/.)
#
# usage: swarm-offload.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"

N=8
fleet_setup
"$GEN" --seed 31 --size $((24 << 20)) --kind random -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null

PORTS=($(free_ports $((N + 1))))
GP=${PORTS[$N]}
conf gw gateway "$GP" fleet.key '[transfer]' 'upload_rate = 4M' '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw
for i in $(seq 1 $N); do
	lines=("gateway = 127.0.0.1:$GP")
	for j in $(seq 1 $N); do
		[ "$j" = "$i" ] || lines+=("static_peer = 127.0.0.1:${PORTS[$((j - 1))]}")
	done
	lines+=('[device]' "target = $T/dev$i.img")
	conf "dev$i" device "${PORTS[$((i - 1))]}" fleet.key "${lines[@]}"
done
t0=$SECONDS
for i in $(seq 1 $N); do start "dev$i"; done
for i in $(seq 1 $N); do
	check "dev$i completes" wait_for 180 is_complete "dev$i"
	check "dev$i holds a byte-identical image" cmp -s "dev$i.img" v2.img
done
elapsed=$((SECONDS - t0))
size=$(stat -c %s v2.img)
sent=$(status gw | sed -n 's/.*"sent": \([0-9]*\).*/\1/p')
echo "# gateway sent $sent bytes for a $size-byte image to $N devices in ~${elapsed}s ($(awk -v s="$sent" -v f="$size" 'BEGIN { printf "%.2f", s / f }') x image)"
# Loopback links are unlimited, so requests race more than on a shaped LAN;
# the 1.1 x target is measured on the namespace rig (bench/). Here the
# bound only catches a swarm that stopped sharing (it was 4.5 x then).
if built_with_asan "$SHOALD"; then
	skip "the gateway sent at most 1.25 x the image" "ASan slows the devices into timeouts"
else
	check "the gateway sent at most 1.25 x the image" test "$((sent * 100))" -le "$((size * 125))"
fi
done_testing
