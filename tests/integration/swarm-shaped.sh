#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Seed offload on a shaped LAN: a gateway and eight devices, each a host of
# its own in a network namespace on a bridge (tests/lib/netns.sh), with tbf
# on every link and the gateway's upload the narrowest. Every device ends
# with a byte-identical, verified image, and the gateway sends at most
# 1.1 times the image (its own counter): the devices trade the rest. The
# bytes do not depend on speed, so the bound holds under ASan too. Time is
# not asserted here: bench/swarm-bench.sh measures it against the
# Kumar-Ross bound, aria2c and HTTP.
#
# Needs root and tbf; otherwise prints a TAP skip.
#
# usage: swarm-shaped.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
HERE=$(dirname "$0")
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
netns_tap_skip_unless_usable tbf
. "$HERE/../lib/fleet.sh"
fleet_setup
trap 'lan_down; fleet_cleanup' EXIT

N=8 PORT=7700
"$GEN" --seed 71 --size $((40 << 20)) --kind random -o v2.img
check "the release is made" "$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 \
	--key rel.key --keyring kr -o rel2
# host 1 is the gateway, hosts 2..9 the devices; no mDNS (static addresses)
NETNS_DAEMONS=0
check "a LAN of $((N + 1)) hosts" lan_up shaped $((N + 1)) 79
if [ "$TAP_FAILED" != 0 ]; then
	echo "Bail out! no LAN"
	exit 1
fi
check "the gateway uploads at 40 Mbit/s" host_shape 1 40mbit 400mbit
for i in $(seq 2 $((N + 1))); do host_shape "$i" 100mbit 400mbit || check "host $i is shaped" false; done

export FLEET_LOG=info
FLEET_LISTEN=$(host_ip 1) conf gw gateway $PORT fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
for i in $(seq 1 $N); do
	lines=("gateway = $(host_ip 1):$PORT")
	for j in $(seq 1 $N); do
		[ "$j" = "$i" ] || lines+=("static_peer = $(host_ip $((j + 1))):$PORT")
	done
	FLEET_LISTEN=$(host_ip $((i + 1))) conf "dev$i" device $PORT fleet.key "${lines[@]}" '[device]' "target = $T/dev$i.img"
done
check "the gateway starts" start_in 1 gw
t0=$SECONDS
for i in $(seq 1 $N); do
	host_spawn $((i + 1)) "$T/dev$i.log" "$SHOALD" -c "$T/dev$i.conf"
	PID_OF[dev$i]=$NETNS_PID
done
all_complete() {
	local i
	for i in $(seq 1 $N); do grep -q "complete and verified" "$T/dev$i.log" || return 1; done
}
wait_for 150 all_complete
for i in $(seq 1 $N); do
	check "dev$i completes and verifies the image" grep -q "complete and verified" "dev$i.log"
	check "dev$i holds a byte-identical image" cmp -s "dev$i.img" v2.img
done
size=$(stat -c %s v2.img)
sent=$(status gw | tr -d ' \n' | sed -n 's/.*"sent":\([0-9]*\).*/\1/p')
echo "# gateway sent ${sent:-?} bytes for a $size-byte image to $N devices in ~$((SECONDS - t0)) s" \
	"($(awk -v s="${sent:-0}" -v f="$size" 'BEGIN { printf "%.3f", s / f }') x image)"
check "the gateway sent at most 1.1 x the image" test "${sent:-999999999999}" -le $((size * 11 / 10))
check "duplicate connections are not redialled over and over" \
	test "$(cat dev*.log | grep -c 'duplicate connection')" -le $((N * N))

stopped_ok=0
for name in gw $(seq -f 'dev%g' 1 $N); do kill -TERM "${PID_OF[$name]}"; done
for name in gw $(seq -f 'dev%g' 1 $N); do
	if wait "${PID_OF[$name]}"; then stopped_ok=$((stopped_ok + 1)); else echo "# $name exited with $?"; fi
done
check "all $((N + 1)) daemons stop cleanly on SIGTERM" test "$stopped_ok" = $((N + 1))
lan_down
check "no process is left in the test's namespaces" test -z "$(lan_leftovers)"
done_testing
