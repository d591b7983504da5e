#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A device's cable is pulled in the middle of a fetch and plugged back in:
# shoald hears its carrier go and come back (rtnetlink), resets the
# connections that heard nothing across the outage, dials its peers again
# at once instead of waiting for TCP's backed-off retransmission, and
# finishes with a byte-identical image. A gateway and two devices, each a
# host of its own on a namespace LAN (tests/lib/netns.sh, static
# addresses), the gateway's upload shaped so that the fetch lasts a while.
# The outage is 2.5 s (a fault's length, not a wait for anything).
#
# Needs root and tbf; otherwise prints a TAP skip.
#
# usage: link-outage.sh SHOAL SHOALD GEN-IMAGE
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

PORT=7700
"$GEN" --seed 83 --size $((16 << 20)) --kind random -o v2.img
check "the release is made" "$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 \
	--key rel.key --keyring kr -o rel2
NETNS_DAEMONS=0
check "a LAN of 3 hosts" lan_up outage 3 83
if [ "$TAP_FAILED" != 0 ]; then
	echo "Bail out! no LAN"
	exit 1
fi
check "the gateway uploads at 8 Mbit/s" host_shape 1 8mbit 100mbit
for i in 2 3; do check "host $i uploads at 8 Mbit/s" host_shape "$i" 8mbit 100mbit; done

export FLEET_LOG=info
FLEET_LISTEN=$(host_ip 1) conf gw gateway $PORT fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
FLEET_LISTEN=$(host_ip 2) conf dev1 device $PORT fleet.key "gateway = $(host_ip 1):$PORT" \
	"static_peer = $(host_ip 3):$PORT" '[device]' "target = $T/dev1.img"
FLEET_LISTEN=$(host_ip 3) conf dev2 device $PORT fleet.key "gateway = $(host_ip 1):$PORT" \
	"static_peer = $(host_ip 2):$PORT" '[device]' "target = $T/dev2.img"
check "the gateway starts" start_in 1 gw
check "dev1 starts" start_in 2 dev1
check "dev2 starts" start_in 3 dev2

received() { # NAME: bytes received so far (peers and gateway)
	status "$1" | jq -r "(.bytes.peers // 0) + (.bytes.gateway // 0)"
}
has_some() { [ "$(received dev1)" -ge $((2 << 20)) ]; }
check "dev1 fetches its first 2 MiB" wait_for 60 has_some
check "dev1 is not complete yet" bash -c "! grep -q 'complete and verified' '$T/dev1.log'"

check "dev1's cable is pulled" host_link 2 down
check "dev1 hears its carrier go" wait_for 10 grep -q "eth0 lost its carrier" dev1.log
sleep 2.5
check "dev1's cable is plugged back in" host_link 2 up
check "dev1 hears its carrier come back and drops what went silent" \
	wait_for 10 grep -Eq "eth0 has its carrier back after [0-9.]+ s; [1-9][0-9]* silent connection" dev1.log
back_line=$(grep -n "has its carrier back" dev1.log | head -1 | cut -d: -f1)
reconnected() { # WHO: a connection to WHO's address made after the carrier came back
	tail -n +"$back_line" dev1.log | grep -q "($(host_ip "$1"):[0-9]*): connected"
}
check "dev1 is connected to the gateway again" wait_for 20 reconnected 1
check "dev1 is connected to dev2 again" wait_for 20 reconnected 3
all_complete() { grep -q "complete and verified" dev1.log && grep -q "complete and verified" dev2.log; }
check "both devices complete" wait_for 120 all_complete
check "dev1 holds a byte-identical image" cmp -s dev1.img v2.img
check "dev2 holds a byte-identical image" cmp -s dev2.img v2.img
check "the gateway and both devices stop cleanly on SIGTERM" stop_in gw dev1 dev2
lan_down
check "no process is left in the test's namespaces" test -z "$(lan_leftovers)"
done_testing
