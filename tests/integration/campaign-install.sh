#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A campaign that really installs: a gateway and three A/B devices on
# loopback (file-backed slots, the file bootloader, `shoal boot-sim` as the
# power cycle), install = manual so that only the gateway's COMMAND starts
# an install. Group a (two devices) gets v2, canary first; group b (one
# device) also fetches v2 but is never told to install it. The second
# device of group a fails its health check on the new slot and rolls back:
# the campaign pauses at the threshold with the check's output reported.
#
# usage: campaign-install.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
. "$(dirname "$0")/../lib/ab-device.sh"
fleet_setup
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
"$GEN" --seed 81 --size $((6 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 82 --change 1 --insert 2 -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
read -r GP P1 P2 P3 <<<"$(free_ports 4)"
PORTS=([1]=$P1 [2]=$P2 [3]=$P3)
GROUP=([1]=a [2]=a [3]=b)

conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw
for n in 1 2 3; do
	mkdev "$n"
	conf "dev$n" device "${PORTS[$n]}" fleet.key '[daemon]' "tags = group=${GROUP[$n]}" 'report_interval = 2s' \
		'[discovery]' "gateway = 127.0.0.1:$GP" '[device]' "system_conf = $T/dev$n/system.conf" \
		'install = manual' 'reboot = none'
	startdev "$n"
done
campaign() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" campaign "$@"; }
devices() { SHOAL_CONTROL_SOCKET="$T/gw.sock" "$SHOAL" devices "$@"; }
export T SHOAL
export -f campaign devices
fetched() { grep -q "install = manual: waiting" "dev$1.log"; }
for n in 1 2 3; do check "dev$n fetches v2 and waits (install = manual)" wait_for 60 fetched "$n"; done
three() { [ "$(devices --json | grep -c '"name": "dev')" = 3 ]; }
check "the three devices report" wait_for 20 three

check "a campaign for group a, canary 1" bash -c "campaign create --release 2 --selector group=a --canary-count 1 | grep -q 'canary'"
pending() { grep -q "reboot-pending" <(SHOAL_CONTROL_SOCKET="$T/dev$1.sock" "$SHOAL" status --json); }
CANARY=
for n in 1 2; do grep -q "campaign 1 asks to install" "dev$n.log" 2>/dev/null && CANARY=$n; done
wait_for 15 bash -c "grep -lq 'installing 2 as the gateway asked' '$T/dev1.log' '$T/dev2.log'" || true
for n in 1 2; do grep -q "installing 2 as the gateway asked" "dev$n.log" && CANARY=$n; done
check "the canary installs because the gateway asked" test -n "$CANARY"
REST=$((3 - ${CANARY:-1}))
check "the canary's install waits for its reboot" wait_for 60 pending "$CANARY"
check "the rest waits for the canary" bash -c "! grep -q 'installing 2 as the gateway asked' '$T/dev$REST.log'"
check "the campaign shows the canary installing" wait_for 10 bash -c "campaign show 1 | grep -Eq ' canary +installing'"
reboot_dev "$CANARY"
check "after its reboot the canary runs v2: done" wait_for 30 bash -c "campaign show 1 | grep -Eq ' canary +done'"
check "then the rest installs" wait_for 60 pending "$REST"
# the rest's application does not come up on the new slot
printf '#!/bin/sh\necho "the application does not answer on :80"\nexit 1\n' >"$T/dev$REST/health/50-app"
chmod +x "$T/dev$REST/health/50-app"
reboot_dev "$REST"
check "the rest rolls back: the campaign pauses at the failure threshold" wait_for 30 \
	bash -c "campaign show 1 | grep -q 'paused: 1 failure(s), the last on dev$REST (threshold 1)'"
check "the failure is reported with the health check's output" \
	bash -c "devices dev$REST | grep -q 'the application does not answer on :80'"
check "the dashboard's data has it too" bash -c "devices --json | grep -q '\"state\": \"failed\"'"
check "resume: nothing is left, the campaign is done" bash -c "campaign resume 1 >/dev/null; campaign list | grep -Eq ' done +canary 1/1 done rest 0/1 done'"
check "group b was never asked and still runs v1" bash -c "! grep -q 'asks to install' '$T/dev3.log' && devices | grep -E '^dev3 ' | grep -q ' none '"
check "shoal devices shows v2 on the canary only" bash -c "devices | grep -E '^dev$CANARY ' | grep -q ' 2 ' && ! devices | grep -E '^dev$REST ' | grep -q ' 2 '"
done_testing
