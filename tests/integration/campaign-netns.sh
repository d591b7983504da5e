#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A campaign on a namespace fleet found by mDNS: a gateway and six A/B
# devices, each a host of its own on a simulated LAN (tests/lib/netns.sh:
# own network, dbus-daemon and avahi-daemon; no gateway address anywhere).
# Four devices carry group=a, two group=b; all are `install = manual`, so
# only the gateway's COMMAND starts an install, and a reboot is `shoal
# boot-sim` plus a restart of the device's shoald in its namespace.
#
# The campaign (release 2, group=a, canary 1, one at a time, failure
# threshold 1): the canary installs, reboots and commits; then the first
# device of the rest fails its health check on the new slot, rolls back and
# reports the check's output, and the campaign pauses. The gateway is
# restarted while paused (the campaign stays paused, nothing moves) and
# again after resume while a device is waiting for its reboot (the campaign
# goes on from there). Every other group-a device commits; group b is never
# commanded and stays on v1. Nothing the test started is left.
#
# Needs root; otherwise prints a TAP skip.
#
# usage: campaign-netns.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
HERE=$(dirname "$0")
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
netns_tap_skip_unless_usable
. "$HERE/../lib/fleet.sh"
. "$HERE/../lib/ab-device.sh"
fleet_setup
trap 'lan_down; fleet_cleanup' EXIT
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
T0=$SECONDS

"$GEN" --seed 91 --size $((6 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 92 --change 1 --insert 2 -o v2.img
check "release 2 is made" "$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 \
	--key rel.key --keyring kr -o rel2
bail_out_if_failed 0 "no release"

# host 1 is the gateway, host N+1 is devN; every host has its own network,
# so they all listen on the same port
GROUP=([1]=a [2]=a [3]=a [4]=a [5]=b [6]=b)
A=(1 2 3 4)
PORT=7600
export FLEET_LISTEN=0.0.0.0 FLEET_MDNS=yes
check "a LAN of 7 hosts, each with its own dbus-daemon and avahi-daemon" lan_up camp 7
bail_out_if_failed 0 "no LAN"
echo "# LAN up after $((SECONDS - T0)) s"

conf gw gateway $PORT fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
for n in 1 2 3 4 5 6; do
	mkdev "$n"
	conf "dev$n" device $PORT fleet.key '[daemon]' "tags = group=${GROUP[$n]}" 'report_interval = 2s' \
		'[device]' "system_conf = $T/dev$n/system.conf" 'install = manual' 'reboot = none'
done
failed=$TAP_FAILED
check "no configuration names the gateway" sh -c "! grep -Eq '^(static_peer|gateway) *=' ./*.conf"
check "the gateway starts" start_in 1 gw
for n in 1 2 3 4 5 6; do check "dev$n starts" start_in $((n + 1)) "dev$n"; done
bail_out_if_failed "$failed" "shoald did not start"

# restart NAME HOST [CMD...]: ends its shoald by pid, runs CMD, starts it
# again in its host (the log so far is kept aside)
restart() {
	local name=$1 host=$2 pid=${PID_OF[$1]}
	kill "$pid" && wait "$pid" 2>/dev/null
	"${@:3}" || return 1
	cp "$name.log" "$name-$(date +%s%N).log"
	rm -f "$name.sock"
	start_in "$host" "$name"
}
# what a reboot is to device N here: the boot simulator between
boot_sim() { sysc "$1" boot-sim >/dev/null; }
reboot_dev() { restart "dev$1" $(($1 + 1)) boot_sim "$1"; }
campaign() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" campaign "$@"; }
devices() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" devices "$@"; }
export T SHOAL
export -f campaign devices
all_logs() { cat "$T/$1".log "$T/$1"-*.log 2>/dev/null; }
logs_have() { all_logs "$1" | grep -q -- "$2"; }
asked() { logs_have "dev$1" "installing 2 as the gateway asked"; }
pending() { SHOAL_CONTROL_SOCKET="$T/dev$1.sock" "$SHOAL" status --json | grep -q "reboot-pending"; }
target_is() { campaign show 1 | grep -Eq "^ +dev$1 +[0-9a-f]+ +$2 +$3\$"; }
version_of() { devices | awk -v d="dev$1" '$1 == d { print $4 }'; }
runs_v2() { [ "$(version_of "$1")" = 2 ]; }
all_of() { # CMD ARGS...: "CMD N ARGS..." holds for dev1..dev6
	local n
	for n in 1 2 3 4 5 6; do "$1" "$n" "${@:2}" || return 1; done
}
discovered() { logs_have "dev$1" "mdns: discovered gateway 'gw ("; }
fetched() { logs_have "dev$1" "install = manual: waiting"; }
six() { [ "$(devices --json | grep -c '"name": "dev')" = 6 ]; }
commanded_in_a() { # prints the group-a devices the gateway asked to install
	local n
	for n in "${A[@]}"; do asked "$n" && echo "$n"; done
}
gw_met() { grep -q "device 'dev$1' for demo" "$T/gw.log"; }
asked_more_than() { [ "$(commanded_in_a | wc -l)" -gt "$1" ]; }

wait_for 30 all_of discovered
for n in 1 2 3 4 5 6; do check "dev$n discovers the gateway by mDNS" discovered "$n"; done
bail_out_if_failed "$failed" "discovery does not work"
wait_for 60 all_of fetched
for n in 1 2 3 4 5 6; do check "dev$n fetches v2 and waits (install = manual)" fetched "$n"; done
check "the six devices report to the gateway" wait_for 20 six
bail_out_if_failed "$failed" "the fleet is not ready"
echo "# the fleet is ready after $((SECONDS - T0)) s"

check "a campaign for group a: canary 1, one at a time, failure threshold 1" bash -c \
	"campaign create --release 2 --selector group=a --canary-count 1 --max-parallel 1 --failure-threshold 1 | grep -q canary"
wait_for 20 asked_more_than 0
CANARY=$(commanded_in_a)
check "exactly one group-a device, the canary, installs because the gateway asked" \
	test "$(echo "$CANARY" | wc -w)" = 1
bail_out_if_failed "$failed" "no canary"
echo "# the canary is dev$CANARY"
check "the canary's install waits for its reboot" wait_for 60 pending "$CANARY"
check "the campaign shows the canary installing" wait_for 10 target_is "$CANARY" canary installing
check "the rest waits for the canary" test "$(commanded_in_a)" = "$CANARY"
reboot_dev "$CANARY"
check "after its reboot the canary runs v2: done" wait_for 30 target_is "$CANARY" canary done
check "shoal devices shows v2 on the canary" wait_for 10 runs_v2 "$CANARY"
bail_out_if_failed "$failed" "the canary did not commit"

# then the rest, one at a time: the first of them fails on the new slot
next_of_rest() { # waits for one more group-a device to be asked; prints it
	local before=$1 now
	wait_for 30 asked_more_than "$before"
	now=$(commanded_in_a)
	comm -13 <(echo "$CANARY $DONE" | tr ' ' '\n' | sed '/^$/d' | sort) <(echo "$now" | sort)
}
DONE=
BAD=$(next_of_rest 1)
check "then one device of the rest is asked to install" test "$(echo "$BAD" | wc -w)" = 1
bail_out_if_failed "$failed" "the rest did not start"
echo "# the first of the rest is dev$BAD: its application will not come up"
printf '#!/bin/sh\necho "the application does not answer on :80"\nexit 1\n' >"$T/dev$BAD/health/50-app"
chmod +x "$T/dev$BAD/health/50-app"
check "one at a time: only it is asked" test "$(commanded_in_a | wc -l)" = 2
check "its install waits for its reboot" wait_for 60 pending "$BAD"
reboot_dev "$BAD"
check "dev$BAD's health check fails and it rolls back" wait_for 30 logs_have "dev$BAD" "rolled back"
check "the campaign pauses at the failure threshold" wait_for 30 \
	bash -c "campaign show 1 | grep -q 'paused: 1 failure(s), the last on dev$BAD (threshold 1)'"
check "the campaign shows dev$BAD failed" target_is "$BAD" rest failed
check "the failure is reported with the health check's output (shoal devices)" \
	bash -c "devices dev$BAD | grep -q 'the application does not answer on :80'"
check "and in shoal devices --json" bash -c "devices --json | grep -q 'the application does not answer on :80'"
check "dev$BAD runs v1 again" test "$(version_of "$BAD")" != 2
bail_out_if_failed "$failed" "no pause at the failure"

# the gateway restarts while the campaign is paused
failed=$TAP_FAILED
check "the gateway restarts while the campaign is paused" restart gw 1
bail_out_if_failed "$failed" "the gateway did not start again"
check "after the restart the campaign is still paused, with its reason" \
	bash -c "campaign show 1 | grep -q 'paused: 1 failure(s), the last on dev$BAD (threshold 1)'"
check "and remembers each device's state" bash -c "campaign show 1 | grep -Eq '^ +dev$CANARY .* canary +done\$' &&
	campaign show 1 | grep -Eq '^ +dev$BAD .* rest +failed\$'"
reannounced() { logs_have "dev$1" "mdns: gateway 'gw (.*announced again"; }
check "the devices see the restarted gateway announced again by mDNS" wait_for 30 all_of reannounced
check "the restarted gateway hears from all six devices" wait_for 30 all_of gw_met
check "paused: no other device was asked" test "$(commanded_in_a | wc -l)" = 2

# resume: the remaining two, one at a time; the gateway restarts again
# while the first of them waits for its reboot
check "resume" bash -c "campaign resume 1 >/dev/null"
DONE=$BAD
NEXT=$(next_of_rest 2)
check "after resume the next device is asked" test "$(echo "$NEXT" | wc -w)" = 1
bail_out_if_failed "$failed" "resume did not go on"
check "dev$NEXT's install waits for its reboot" wait_for 60 pending "$NEXT"
check "the campaign shows it installing" wait_for 10 target_is "$NEXT" rest installing
check "the gateway restarts while dev$NEXT is installing" restart gw 1
bail_out_if_failed "$failed" "the gateway did not start again"
check "the campaign is running after the restart" bash -c "campaign list | grep -Eq '^1 .* running '"
reboot_dev "$NEXT"
check "after its reboot dev$NEXT runs v2: done" wait_for 30 target_is "$NEXT" rest done
DONE="$BAD $NEXT"
LAST=$(next_of_rest 3)
check "then the last group-a device is asked" test "$(echo "$LAST" | wc -w)" = 1
bail_out_if_failed "$failed" "the campaign stopped"
check "dev$LAST's install waits for its reboot" wait_for 60 pending "$LAST"
reboot_dev "$LAST"
check "after its reboot dev$LAST runs v2: done" wait_for 30 target_is "$LAST" rest done
check "the campaign is done: canary 1/1, rest 2/3 with the failure" \
	wait_for 10 bash -c "campaign list | grep -Eq '^1 .* done +canary 1/1 done rest 2/3 done \\(failures\\)'"
for n in "${A[@]}"; do
	[ "$n" = "$BAD" ] && continue
	check "dev$n (group a) runs v2" wait_for 10 runs_v2 "$n"
done
for n in 5 6; do
	check "dev$n (group b) was never asked" bash -c "! cat $T/dev$n*.log | grep -q 'asks to install'"
	check "dev$n (group b) still runs v1" test "$(version_of "$n")" = none
done
echo "# the gateway's logs: $(cat gw*.log | grep -c 'campaign 1: install 2 to device') command(s) sent"

# Every shoald stops cleanly, then the LAN goes with everything in it.
check "all 7 daemons stop cleanly on SIGTERM" stop_in gw dev1 dev2 dev3 dev4 dev5 dev6
lan_down
check "no process is left in the test's namespaces" test -z "$(lan_leftovers)"
check "no process the test started is left" test -z "$(lan_pids)"
echo "# $((SECONDS - T0)) s in all"
done_testing
