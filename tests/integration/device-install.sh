#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# shoald drives the A/B installer ([device] system_conf): a gateway and
# three devices on loopback (static peers), each with two file-backed slots,
# the file bootloader and the boot simulator standing in for power cycles
# ("reboot" = stop shoald, `shoal boot-sim`, start shoald again).
#   - the devices run v1 in their active slot and fetch v2 straight into the
#     inactive slot, copying what the active slot holds first (bytes reused
#     > 0; no file but the slots grows by the image size)
#   - install = auto, reboot = now: verify-slot off the loop, the trial set,
#     reboot-command run; after the reboot the boot check commits
#   - one device's health check fails: it rolls back, says so, refuses v2
#     and does not fetch it again
#   - a device killed -9 while fetching into its slot resumes without
#     fetching verified chunks again
#   - after the gateway is gone, a late device gets v2 from the devices'
#     active slots alone
#
# usage: device-install.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
. "$(dirname "$0")/../lib/ab-device.sh"
fleet_setup
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT

"$GEN" --seed 31 --size $((12 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 32 --change 1 --insert 4 -o v2.img
IMG=$(stat -c %s v2.img)
"$SHOAL" release create --image v1.img --product demo --version 1 --counter 1 --key rel.key --keyring kr -o rel1 >/dev/null
"$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
"$SHOAL" bundle create rel1 -o b1.shoal >/dev/null

read -r GP P1 P2 P3 P4 <<<"$(free_ports 5)"
PORTS=([1]=$P1 [2]=$P2 [3]=$P3 [4]=$P4)

# devconf N PEER...: shoal.conf of device N, dialling the given ports
devconf() {
	local n=$1 lines=(); shift
	for p in "$@"; do lines+=("static_peer = 127.0.0.1:$p"); done
	conf "dev$n" device "${PORTS[$n]}" fleet.key "${lines[@]}" '[device]' "system_conf = $T/dev$n/system.conf" \
		"install = ${INSTALL:-auto}" "reboot = ${REBOOT:-now}"
}
# sizes of every file of device N but its slots, summed
others() { find "$T/dev$1" -type f ! -name 'slot-*' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

for n in 1 2 3 4; do mkdev "$n"; done
# devices 1 and 3 run v1 installed by shoal (slot B, committed: a known
# manifest); device 2 runs the factory v1 in slot A (scanned by content)
for n in 1 3; do
	check "dev$n: shoal install v1 into slot B" sysc "$n" install --reboot none b1.shoal
	sysc "$n" boot-sim >/dev/null
	check "dev$n: boot check commits v1" sysc "$n" boot-check
done
printf '#!/bin/sh\necho "the application does not answer"\nexit 1\n' >"$T/dev3/health/50-app"
chmod +x "$T/dev3/health/50-app"

conf gw gateway "$GP" fleet.key '[transfer]' 'upload_rate = 512K' '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw
GWPID=${PIDS[-1]}
check "gateway seeds v2" wait_for 10 grep -q "seeding demo 2" gw.log
devconf 1 "$GP" "$P2" "$P3"
devconf 2 "$GP" "$P1" "$P3"
devconf 3 "$GP" "$P1" "$P2"
check "shoald --check accepts system_conf, install and reboot" "$SHOALD" --check -c dev1.conf
for n in 1 2 3; do startdev "$n"; done
check "dev1: the boot check ran before the swarm" grep -q "boot check: running slot B, no install pending" dev1.log

# kill -9 while dev1 fetches into its slot: it resumes, and fetches no
# verified chunk again
# (killed at once, from the same look at its status: a second look may
# find the fetch done)
net() {
	held=$(status dev1 | jq -e 'select(.fetch != null and (.fetch.from_peers + .fetch.from_gateway) > 0) | .fetch.bytes_held') &&
		kill -9 "${DPID[1]}"
}
check "dev1 fetches v2 from the network, killed -9 in the middle" wait_for 60 net
wait "${DPID[1]}" 2>/dev/null
cp dev1.log dev1-killed.log
startdev 1
check "dev1 resumes after kill -9" wait_for 20 grep -q "resuming with" dev1.log
echo "# dev1: $held bytes held at the kill"

for n in 1 2 3; do
	check "dev$n: installed v2 and ran reboot-command" wait_for 120 reboots "$n" 1
done
for n in 1 2 3; do
	check "dev$n: fetched into its inactive slot" grep -Eq "fetching 2 straight into slot [AB]" "dev$n.log" "dev$n"-*.log
	reused=$(cat "dev$n"-*.log "dev$n.log" 2>/dev/null | sed -n 's/.*reuse slot [AB] ([^)]*): \([0-9]*\) bytes of the new release.*/\1/p' | head -1)
	echo "# dev$n: ${reused:-0} bytes of v2 reused from the active slot (image $IMG)"
	check "dev$n: reused bytes from the active slot" test "${reused:-0}" -gt 0
	check "dev$n: no file but the slots grew by the image size" test "$(others "$n")" -lt "$IMG"
	check "dev$n: verify-slot ran off the event loop" grep -Eq "verify-slot: $IMG bytes of slot [AB] hashed in [0-9]+ ms off the event loop" "dev$n.log"
	check "dev$n: status: rebooting, the trial set" \
		dstatus "$n" '.device.state == "rebooting" and .device.phase == "reboot-pending" and .system.bootloader_env.trial == true'
done
grep -h "verify-slot:" dev?.log | sed 's/^/# /'
after=$(sed -n 's/.*complete and verified.* in .*; \([0-9]*\) bytes from peers, \([0-9]*\) from the gateway.*/\1 \2/p' dev1.log)
resumed=$(sed -n 's/.*resuming with [0-9]* of [0-9]* chunks (\([0-9]*\) bytes).*/\1/p' dev1.log)
echo "# dev1: resumed with ${resumed:-0} bytes; fetched after the restart: $after"
check "dev1 fetched after the restart at most what it lacked" \
	test "$(echo "${after:-0 0}" | awk '{print $1 + $2}')" -le "$((IMG - ${resumed:-0}))"
check "dev1: slot A holds v2" cmp -n "$IMG" "$T/dev1/slot-a" v2.img
check "dev2: slot B holds v2" cmp -n "$IMG" "$T/dev2/slot-b" v2.img
expect_exit 0 "shoal status shows install and system together" env SHOAL_CONTROL_SOCKET="$T/dev2.sock" "$SHOAL" status
output_has "... the slots" "Slots: .*A"
output_has "... the install phase" "Install: +rebooting 2, phase reboot-pending"

# the reboot: dev1 and dev2 commit; dev3's health check fails
for n in 1 2 3; do reboot_dev "$n"; done
for n in 1 2; do
	check "dev$n: the boot check commits v2" wait_for 20 grep -q "boot check: 2 (counter 2) passed its health checks" "dev$n.log"
	check "dev$n: status: v2 installed, committed" \
		dstatus "$n" '.system.installed.version == "2" and .device.boot_check.outcome == "committed" and .system.bootloader_env.trial == false'
done
check "dev1 serves v2 from its active slot" grep -q "serving 2 (counter 2) from slot A (good, active" dev1.log
check "dev1 still serves v1 from slot B" grep -q "serving 1 (counter 1) from slot B (good, inactive" dev1.log
check "dev3: rolled back, and says why" wait_for 20 grep -q "the application does not answer" dev3.log
check "dev3: ... refused from now on" grep -q "boot check: 2 (counter 2) failed on slot A and was rolled back; it is refused" dev3.log
check "dev3: rebooted into the old slot" wait_for 20 reboots 3 2
reboot_dev 3
check "dev3 runs v1 in slot B again" wait_for 20 dstatus 3 '.system.booted == "B" and .system.installed.version == "1"'
check "dev3 does not take v2 again" wait_for 30 grep -q "refused on this device: not taken" dev3.log
check "dev3 did not even fetch v2's manifest again" sh -c "! grep -q 'refused: release 2 is refused' dev3.log"
check "dev3 never fetched v2 after the rollback" sh -c "! grep -q 'fetching 2 straight into' dev3.log"

# the gateway goes; a late device gets v2 from the devices' active slots.
# It installs on the operator's word (install = manual) and leaves the
# reboot to them (reboot = none).
kill "$GWPID"; wait "$GWPID" 2>/dev/null
INSTALL=manual REBOOT=none devconf 4 "$P1" "$P2"
startdev 4
check "dev4 fetches v2 from its peers alone" wait_for 120 grep -q "install = manual: waiting for 'shoal install --fetched'" dev4.log
check "dev4: nothing came from a gateway" grep -Eq "complete and verified.* in .*; [1-9][0-9]* bytes from peers, 0 from the gateway" dev4.log
check "dev4: status: fetched, waiting" dstatus 4 '.device.state == "fetched" and .device.version == "2"'
expect_exit 0 "shoal install --fetched asks shoald to install" "$SHOAL" install --fetched --socket "$T/dev4.sock"
check "dev4: installed, the reboot left pending" wait_for 30 dstatus 4 '.device.state == "reboot-pending" and .system.pending.phase == "reboot-pending"'
check "dev4: ... and says so" grep -q "reboot pending for 2: left to the operator or the gateway (reboot = none)" dev4.log
check "dev4: no reboot-command ran" test ! -e "$T/dev4/reboots"
expect_exit 1 "a second shoal install --fetched: nothing waits" "$SHOAL" install --fetched --socket "$T/dev4.sock"
output_has "... it says why" "an install runs or waits for its reboot"
check "dev4: slot B holds v2" cmp -n "$IMG" "$T/dev4/slot-b" v2.img
reboot_dev 4
check "dev4: commits v2 after the reboot" wait_for 20 dstatus 4 '.system.installed.version == "2" and .device.boot_check.outcome == "committed"'

done_testing
