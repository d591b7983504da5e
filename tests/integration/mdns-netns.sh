#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A fleet that finds itself by mDNS alone. A gateway and four devices, each
# a host of its own on a simulated LAN (network namespaces joined by a
# bridge, each host with its own dbus-daemon and avahi-daemon; see
# tests/lib/netns.sh), with no static peer and no gateway address: every
# device ends with a byte-identical image, and the devices trade with each
# other (the gateway's uplink is shaped). A device's TXT record follows the
# newest release it holds. A host of another fleet tag on the same LAN is
# neither dialled nor served, and a record whose first fleet key is another
# fleet's is ignored even if a second one names ours. Then one device's
# avahi-daemon is killed and started again: the device says so, publishes
# itself again, and a device started afterwards finds it (and it finds that
# device). All daemons stop cleanly, and nothing the test made is left.
#
# Needs root; otherwise prints a TAP skip.
#
# usage: mdns-netns.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
HERE=$(dirname "$0")
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
netns_tap_skip_unless_usable
. "$HERE/../lib/fleet.sh"
fleet_setup
trap 'lan_down; fleet_cleanup' EXIT
T0=$SECONDS

mdns_conf() { # NAME ROLE TAG EXTRA...: no static peer, no gateway address
	local name=$1 role=$2 tag=$3; shift 3
	{
		printf '[daemon]\nrole = %s\nname = %s\nstate_dir = %s/%s\n' "$role" "$name" "$T" "$name"
		printf 'control_socket = %s/%s.sock\nlog_level = debug\n' "$T" "$name"
		printf '[fleet]\nproduct = demo\nsecret_file = %s/fleet.key\ntrust = %s/root.pub\ntag = %s\n' "$T" "$T" "$tag"
		printf '[discovery]\nmdns = yes\n'
		for line in "$@"; do printf '%s\n' "$line"; done
	} >"$name.conf"
}
restart_avahi_of_dev1() { host_avahi_start 2 && host_avahi_wait 2; }
logs_have() { grep -q -- "$2" "$T/$1.log"; }
# a device-to-device session: the hello of another device, in NAME's log
met_device() { grep -Eq "peer [0-9a-f]{16}: device 'dev[0-9]' for demo" "$T/$1.log"; }
all_devices() { # CMD ARGS...: "CMD devI ARGS..." holds for dev1..dev4
	local i
	for i in 1 2 3 4; do "$1" "dev$i" "${@:2}" || return 1; done
}

"$GEN" --seed 41 --size $((16 << 20)) --kind mixed -o v2.img
check "the release is made" "$SHOAL" release create --image v2.img --product demo --version 2.0 --counter 2 \
	--key rel.key --keyring kr -o rel2
bail_out_if_failed 0 "no release"

# hosts: 1 gateway, 2-5 dev1..dev4, 6 a host of another fleet tag, 7 dev5
# (started last)
GW=1 STRANGER=6 LATE=7
check "a LAN of 7 hosts, each with its own dbus-daemon and avahi-daemon" lan_up mdns 7
bail_out_if_failed 0 "no LAN"
echo "# LAN up after $((SECONDS - T0)) s"
# A gateway with a slow uplink, so that the devices must trade among
# themselves (what they learnt of each other by mDNS) to finish soon.
SHAPED=
if netns_have_qdisc tbf; then
	check "the gateway's upload is shaped to 40 Mbit/s (tbf)" host_shape $GW 40mbit -
	SHAPED=1
else
	echo "# this kernel has no tbf qdisc: the gateway's upload is not shaped"
fi

# A record whose first fleet key names another fleet and whose second
# names ours: the first one counts (RFC 6763 6.4), so the fleet ignores it.
# It pins the order in which avahi hands TXT strings over.
DECOY=
if command -v avahi-publish >/dev/null; then
	host_spawn $STRANGER "$T/decoy.log" avahi-publish -s decoy _shoal._tcp 9 \
		txtvers=1 id=00000000000000de fleet=fleet-b fleet=fleet-a proto=1 && DECOY=1
fi

mdns_conf gw gateway fleet-a '[gateway]' "store_dir = $T/store" "import = $T/rel2"
for i in 1 2 3 4 5; do mdns_conf "dev$i" device fleet-a '[device]' "target = $T/dev$i.img"; done
# the same secret, another tag: only the tag keeps it apart
mdns_conf stranger device fleet-b '[device]' "target = $T/stranger.img"
check "the configurations have neither static peers nor a gateway address" \
	sh -c "! grep -Eq '^(static_peer|gateway) *=' ./*.conf"
check "shoald --check accepts a device with mdns alone" "$SHOALD" --check -c dev1.conf

failed=$TAP_FAILED
check "the gateway starts" start_in $GW gw
for i in 1 2 3 4; do check "dev$i starts" start_in $((i + 1)) "dev$i"; done
check "the stranger starts" start_in $STRANGER stranger
bail_out_if_failed "$failed" "shoald did not start"
check "the gateway is published" wait_for 20 logs_have gw "mdns: published 'gw ("

# one bound for all of them, then each on its own
wait_for 30 all_devices logs_have "mdns: discovered gateway 'gw ("
for i in 1 2 3 4; do
	check "dev$i discovers the gateway by mDNS" logs_have "dev$i" "mdns: discovered gateway 'gw ("
done
bail_out_if_failed "$failed" "discovery does not work"
wait_for 90 all_devices is_complete
for i in 1 2 3 4; do
	check "dev$i completes" is_complete "dev$i"
	check "dev$i holds a byte-identical image" cmp -s "dev$i.img" v2.img
done
echo "# the fleet has the release after $((SECONDS - T0)) s"
wait_for 20 all_devices met_device
for i in 1 2 3 4; do
	check "dev$i had a session with another device" met_device "dev$i"
done
# a device that completed announces so: its TXT record follows what it holds
check "the gateway sees dev4's record change to newest release 2" \
	wait_for 20 logs_have gw "mdns: 'dev4 (.*now announces newest release 2,"
from_peers=0
for i in 1 2 3 4; do
	bytes=$(status "dev$i" | tr -d ' \n' | grep -o '"bytes":{[^}]*}')
	echo "# dev$i received: $bytes"
	n=$(echo "$bytes" | sed -n 's/.*"peers":\([0-9]*\).*/\1/p')
	from_peers=$((from_peers + ${n:-0}))
done
if [ -n "$SHAPED" ]; then
	check "the devices fetched chunks from each other, not only from the gateway" test "$from_peers" -gt 0
fi

# The stranger sees the fleet's announcements and ignores them (another
# tag), and the fleet ignores it: no session either way, nothing fetched.
check "the stranger ignores the fleet's announcements" logs_have stranger "fleet 'fleet-a' is not ours ('fleet-b')"
check "no one dialled the stranger" sh -c "! grep -q \"discovered device 'stranger\" gw.log dev[1-4].log"
check "the stranger dialled no one of the fleet" sh -c "! grep -Eq \"mdns: discovered [a-z]+ '(gw|dev[0-9]) \" stranger.log"
check "the stranger holds no release" sh -c "! test -s stranger.img"
if [ -n "$DECOY" ]; then
	check "a record whose first fleet key is another fleet's is ignored" \
		wait_for 10 logs_have gw "ignoring 'decoy': fleet 'fleet-b' is not ours"
	check "and no one dialled it" sh -c "! grep -q \"discovered device 'decoy'\" gw.log dev[1-4].log"
fi

# avahi-daemon of dev1 (host 2) dies and comes back
check "dev1's avahi-daemon is stopped (by pid)" host_avahi_stop 2
check "dev1 says it lost avahi-daemon" wait_for 20 logs_have dev1 "mdns: lost avahi-daemon"
check "dev1 waits for it" wait_for 20 logs_have dev1 "mdns: waiting for avahi-daemon to appear"
failed=$TAP_FAILED
check "dev1's avahi-daemon starts again" restart_avahi_of_dev1
bail_out_if_failed "$failed" "avahi-daemon did not start again"
check "dev1 sees avahi-daemon back" wait_for 30 logs_have dev1 "mdns: avahi-daemon is back"
check "dev1 is re-published" wait_for 30 logs_have dev1 "mdns: re-published 'dev1 ("
check "dev5 starts after the restart" start_in $LATE dev5
check "dev5 discovers dev1 by its new announcement" \
	wait_for 30 logs_have dev5 "mdns: discovered device 'dev1 (.*newest release 2,"
check "dev1 still discovers: it finds dev5" wait_for 30 logs_have dev1 "mdns: discovered device 'dev5 ("
check "dev5 completes" wait_for 90 is_complete dev5
check "dev5 holds a byte-identical image" cmp -s dev5.img v2.img
echo "# the gateway saw: $(grep -c "dev1 (.*went away" gw.log) goodbye(s) and $(grep -c "dev1 (.*announced again" gw.log) re-announcement(s) of dev1"

# Every shoald stops cleanly (exit 0, no leak report under ASan), then
# the LAN goes with everything in it.
check "all 7 daemons stop cleanly on SIGTERM" stop_in gw dev1 dev2 dev3 dev4 dev5 stranger
lan_down
check "no process is left in the test's namespaces" test -z "$(lan_leftovers)"
check "no process the test started is left" test -z "$(lan_pids)"
echo "# $((SECONDS - T0)) s in all"
done_testing
