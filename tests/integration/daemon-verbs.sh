#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `shoal install PATH`, mark-good, mark-bad and rollback through a running
# shoald ([device] system_conf), and the direct mode with none. Three
# devices on loopback (static peers, no gateway), two file-backed slots
# each, the file bootloader and the boot simulator standing in for power
# cycles ("reboot" = stop shoald, `shoal boot-sim`, start shoald again).
#   - no shoald: the direct mode installs v1 into dev1's slot B
#   - dev1's shoald refuses a bundle of another product (exit 4), one signed
#     by an untrusted key (exit 3) and, later, an older one (exit 4), each
#     with the reason, nothing touched
#   - `shoal install v2.shoal` through it: reuse from the active slot, the
#     slot check off the loop, the trial set, reboot = now followed; after
#     the reboot the boot check commits v2
#   - mark-bad with nothing on trial: exit 1, says why; rollback: back to
#     slot B (v1), exit 5, the reboot follows the policy, nothing is
#     fetched meanwhile
#   - dev2 fetches v2 from dev1 alone (no gateway) and installs it; rollback
#     through shoald cancels its trial before the reboot
#   - dev3 fetches v2 slowly from dev1: installing v2 from a bundle then is
#     refused as busy; v3 from a bundle stops the fetch and installs; dev1
#     then fetches v3 from dev3 (the USB stick seeds the LAN)
#
# usage: daemon-verbs.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
. "$(dirname "$0")/../lib/ab-device.sh"
fleet_setup
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
export SHOAL_CONTROL_SOCKET="$T/no-daemon.sock"

"$GEN" --seed 41 --size $((12 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 42 --change 1 --insert 4 -o v2.img
"$GEN" --from v2.img --seed 43 --change 1 --insert 2 -o v3.img
"$GEN" --seed 44 --size $((12 << 20)) --kind mixed -o v0.img
IMG=$(stat -c %s v2.img)
"$SHOAL" keygen -o evil >/dev/null
rel() { # NAME VERSION COUNTER IMAGE [ARGS...]
	"$SHOAL" release create --image "$4" --product demo --version "$2" --counter "$3" "${@:5}" -o "r$1" >/dev/null &&
		"$SHOAL" bundle create "r$1" -o "$1.shoal" >/dev/null
}
check "bundles: v1, v2, v3, another product, an untrusted signer" bash -c "
	$(declare -f rel); SHOAL='$SHOAL'
	rel b1 1 1 v1.img --key rel.key --keyring kr && rel b2 2 2 v2.img --key rel.key --keyring kr &&
	rel b3 3 3 v3.img --key rel.key --keyring kr &&
	'$SHOAL' release create --image v2.img --product other --version 9 --counter 9 --key rel.key --keyring kr -o rother >/dev/null &&
	'$SHOAL' bundle create rother -o other.shoal >/dev/null && rel evil 9 9 v2.img --key evil.key"

read -r P1 P2 P3 <<<"$(free_ports 3)"
PORTS=([1]=$P1 [2]=$P2 [3]=$P3)
devconf() { # N REBOOT EXTRA...
	local n=$1 rb=$2; shift 2
	conf "dev$n" device "${PORTS[$n]}" fleet.key "$@" '[device]' "system_conf = $T/dev$n/system.conf" \
		"install = auto" "reboot = $rb"
}
# the shoal command on device N, with its shoald's socket
dsh() { SHOAL_CONTROL_SOCKET="$T/dev$1.sock" "$SHOAL" --system-conf "$T/dev$1/system.conf" "${@:2}"; }
sums() { cksum "$T/dev$1/slot-a" "$T/dev$1/slot-b" "$T/dev$1/env"; }

for n in 1 2 3; do mkdev "$n"; done
# dev3's factory image shares nothing with v2: its fetch takes a while
dd if=v0.img of="$T/dev3/slot-a" conv=notrunc status=none

# --- the direct mode, no shoald --------------------------------------------
expect_exit 0 "no shoald: shoal install installs directly" sysc 1 install --reboot none b1.shoal
output_has "... into slot B" "installed 1 \(counter 1\) into slot B"
expect_exit 1 "no shoald: mark-bad directly, nothing on trial" sysc 1 mark-bad
output_has "... says why" "no trial of the booted slot is pending"
sysc 1 boot-sim >/dev/null
check "no shoald: boot-check commits v1" sysc 1 boot-check
expect_exit 1 "--socket naming no shoald: exit 1, says so" sysc 1 install --socket "$T/nothing.sock" b2.shoal
output_has "... cannot reach it" "cannot reach shoald at $T/nothing.sock"

# --- dev1's shoald: refusals -------------------------------------------------
devconf 1 now "static_peer = 127.0.0.1:$P2" "static_peer = 127.0.0.1:$P3" '[transfer]' 'upload_rate = 512K'
startdev 1
before=$(sums 1)
expect_exit 4 "shoald: a bundle of another product is refused (exit 4)" dsh 1 install other.shoal
output_has "... names the product" "release is for product 'other', this device is 'demo'"
expect_exit 3 "shoald: a bundle signed by an untrusted key fails verification (exit 3)" dsh 1 install evil.shoal
output_has "... says so" "shoald: .*(signature|trusted|key)"
check "... shoald logged the refusals" grep -q "install of $T/other.shoal refused: release is for product 'other'" dev1.log
check "... nothing touched: slots and environment, nothing pending, idle" bash -c "
	test \"\$(cksum '$T/dev1/slot-a' '$T/dev1/slot-b' '$T/dev1/env')\" = '$before' &&
	SHOAL_CONTROL_SOCKET='$T/dev1.sock' '$SHOAL' status --json | jq -e '.device.state == \"idle\" and (.system | has(\"pending\") | not)'"
expect_exit 1 "--no-daemon while shoald runs: the installer is held" dsh 1 install --no-daemon b2.shoal
output_has "... says by whom" "another installer holds"
expect_exit 2 "--trust is for the direct mode" dsh 1 install --trust rel.pub b2.shoal
output_has "... says so" "--trust is for a direct install"

# --- dev1: v2 from a bundle through shoald -------------------------------------
expect_exit 0 "shoald installs b2.shoal (shoal install --json)" dsh 1 install --json b2.shoal
echo "$TAP_OUT" | sed -n '/^{/,/^}/p' >install.json
check "... through shoald, into slot A, rebooting (reboot = now)" \
	jq -e '.ok and .via == "shoald" and .version == "2" and .slot == "A" and .phase == "reboot-pending" and .rebooting' install.json
check "... reused from the active slot, read the rest from the bundle" \
	jq -e ".bytes_reused > 0 and .bytes_read > 0 and .bytes_reused + .bytes_read <= $IMG and .image_size == $IMG" install.json
echo "# dev1: $(jq -r '"\(.bytes_reused) bytes reused, \(.bytes_read) read from the bundle"' install.json) (image $IMG)"
check "... shoald says what it installs from where" grep -q "installing 2 (counter 2) from $T/b2.shoal into slot A" dev1.log
check "... the slot check ran off the event loop" grep -Eq "verify-slot: $IMG bytes of slot A hashed in [0-9]+ ms off the event loop" dev1.log
check "... reboot-command ran" reboots 1 1
check "... status: rebooting, the trial set" \
	dstatus 1 '.device.state == "rebooting" and .device.phase == "reboot-pending" and .system.bootloader_env.trial == true'
check "... slot A holds v2" cmp -n "$IMG" "$T/dev1/slot-a" v2.img
expect_exit 1 "a second install while the trial waits: busy, exit 1" dsh 1 install b3.shoal
output_has "... says why" "reboot-command ran: the device is going down"
reboot_dev 1
check "dev1: the boot check commits v2 after the reboot" wait_for 20 grep -q "boot check: 2 (counter 2) passed its health checks in slot A: committed" dev1.log
check "dev1 serves v2 from its active slot" grep -q "serving 2 (counter 2) from slot A (good, active" dev1.log
before=$(sums 1)
expect_exit 4 "shoald: an older bundle (counter 1 < 2) is refused (exit 4)" dsh 1 install b1.shoal
output_has "... says why" "release counter 1 is (below the installed floor 2|not above 2)"
check "... nothing touched" test "$(sums 1)" = "$before"

# --- dev1: mark-bad, rollback through shoald ---------------------------------
expect_exit 1 "mark-bad through shoald with nothing on trial: exit 1" dsh 1 mark-bad
output_has "... says why" "shoald: no trial of the booted slot is pending"
expect_exit 5 "rollback through shoald: back to slot B (v1), exit 5" dsh 1 rollback
output_has "... says so" "rolled back 1, rebooting"
check "... the reboot followed the policy (reboot = now)" reboots 1 2
check "... status: rebooting, the bootloader boots B next" \
	dstatus 1 '.device.state == "rebooting" and .system.bootloader_env.primary == "B"'
expect_exit 1 "... an install meanwhile: busy" dsh 1 install b3.shoal
output_has "... says why" "reboot-command ran: the device is going down"
reboot_dev 1
check "dev1 runs v1 in slot B again" wait_for 20 dstatus 1 '.system.booted == "B" and .system.installed.version == "1"'
check "dev1 still serves v2 from slot A" grep -q "serving 2 (counter 2) from slot A (good, inactive" dev1.log

# --- dev2 fetches v2 from dev1 alone, rollback cancels its trial --------------
devconf 2 none "static_peer = 127.0.0.1:$P1"
startdev 2
check "dev2 fetches v2 from dev1 and installs it" wait_for 120 dstatus 2 '.device.state == "reboot-pending" and .device.version == "2"'
check "dev2: from its peer alone, no gateway" grep -Eq "complete and verified.* in .*; [0-9]+ bytes from peers, 0 from the gateway" dev2.log
check "dev2: slot B holds v2" cmp -n "$IMG" "$T/dev2/slot-b" v2.img
expect_exit 1 "dev2: mark-bad before the reboot: nothing to mark" dsh 2 mark-bad
output_has "... says so" "no trial of the booted slot is pending"
expect_exit 0 "dev2: rollback through shoald cancels the trial" dsh 2 rollback --json
output_has "... abandoned" '"outcome": "abandoned"'
check "dev2: status: idle, nothing pending, A boots next" \
	dstatus 2 '.device.state == "idle" and (.system | has("pending") | not) and .system.bootloader_env.primary == "A" and .system.bootloader_env.trial == false'

# --- dev3: a bundle while a fetch runs ----------------------------------------
devconf 3 none "static_peer = 127.0.0.1:$P1"
startdev 3
fetching() { status dev3 | jq -e '.fetch != null and .fetch.version == "2" and (.fetch.from_peers + .fetch.from_gateway) > 0'; }
check "dev3 fetches v2 from dev1 (slowly: nothing to reuse)" wait_for 60 fetching
expect_exit 1 "dev3: a bundle of the release being fetched: busy, exit 1" dsh 3 install b2.shoal
output_has "... says why" "shoald is fetching 2 \(counter 2\) into slot B, not older than 2"
expect_exit 0 "dev3: a newer bundle (v3) stops the fetch and installs" dsh 3 install b3.shoal
output_has "... installed through shoald" "installed 3 \(counter 3\) into slot B through shoald"
check "dev3: says the fetch stopped and why" grep -q "the fetch of 2 (counter 2) stops: 3 (counter 3) from $T/b3.shoal is installed instead" dev3.log
check "dev3: slot B holds v3, the trial set" bash -c "cmp -n $(stat -c %s v3.img) '$T/dev3/slot-b' v3.img &&
	SHOAL_CONTROL_SOCKET='$T/dev3.sock' '$SHOAL' status --json | jq -e '.device.state == \"reboot-pending\" and .system.bootloader_env.trial'"
expect_exit 1 "dev3: another bundle while v3 waits for its reboot: busy" dsh 3 install b2.shoal
output_has "... says why" "3 waits in slot B for its trial boot"
check "dev1 fetches v3 from dev3 (the bundle seeds the LAN)" wait_for 120 grep -q "release demo 3 (counter 3, .*) accepted from peer" dev1.log
check "dev1: ... complete, from peers" wait_for 120 grep -Eq "release demo 3 \(counter 3\): complete and verified.*[1-9][0-9]* bytes from peers, 0 from the gateway" dev1.log
check "dev1 never fetched v2 again after its rollback" sh -c "! grep -q 'fetching 2 straight into' dev1.log"

done_testing
