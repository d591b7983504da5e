#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A power cut in the middle of shoald's install, after the fetch and before
# the bootloader is switched (here: in a post-install hook): at the next
# start the boot check abandons the install, the device still boots the
# old slot, and shoald installs the release again from what the inactive
# slot holds, without fetching it again:
#   - install = auto: at once, then the trial reboot and the commit
#   - install = manual: on `shoal install --fetched`
#
# usage: device-cut-install.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
. "$(dirname "$0")/../lib/ab-device.sh"
fleet_setup
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT

"$GEN" --seed 41 --size $((6 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 42 --change 1 --insert 4 -o v2.img
IMG=$(stat -c %s v2.img)
"$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
read -r GP P1 P2 <<<"$(free_ports 3)"
conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw

# cut_in_install N INSTALL: device N fetches v2 and hangs in its first post-install
# hook; then the power goes: shoald and the hook die at once
cut_in_install() {
	local n=$1
	mkdev "$n"
	mkdir -p "$T/dev$n/hooks/post-install.d"
	cat >"$T/dev$n/hooks/post-install.d/10-hold" <<HOOK
#!/bin/sh
[ -e "$T/dev$n/held" ] && exit 0
echo \$\$ >"$T/dev$n/held"
exec sleep 120
HOOK
	chmod +x "$T/dev$n/hooks/post-install.d/10-hold"
	conf "dev$n" device "${PORTS[$n]}" fleet.key "gateway = 127.0.0.1:$GP" '[device]' \
		"system_conf = $T/dev$n/system.conf" "install = $2" "reboot = now"
	startdev "$n"
}
held() { [ -s "$T/dev$1/held" ]; }
power_cut() { # N: shoald and its hook, killed -9 together; then the boot

	kill -9 "${DPID[$1]}" "$(cat "$T/dev$1/held")"
	wait "${DPID[$1]}" 2>/dev/null
	rm -f "$T/dev$1.sock" # (a kill -9 leaves it: start would not wait)
	cp "dev$1.log" "dev$1-cut.log"
	sysc "$1" boot-sim >/dev/null
}
fetched() { grep -hc "fetching 2 straight into slot" "dev$1.log" "dev$1"-*.log 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
PORTS=([1]=$P1 [2]=$P2)

# install = auto
cut_in_install 1 auto
check "dev1: fetched v2 and hangs in post-install" wait_for 60 held 1
power_cut 1
check "dev1 boots slot A again: the switch never happened" grep -qx "slot=A" "$T/dev1/booted"
startdev 1
check "dev1: the boot check abandons the install cut short" \
	grep -q "install of 2 interrupted in phase post-install, before the bootloader was switched: abandoned" dev1.log
check "dev1: the install starts again from slot B" wait_for 10 grep -q "the install of 2, cut short, starts again from what slot B holds" dev1.log
check "dev1: installed, the trial set, reboot-command ran" wait_for 30 reboots 1 1
check "dev1: the slot was checked whole again" grep -Eq "verify-slot: $IMG bytes of slot B hashed" dev1.log
check "dev1: v2 was fetched once" test "$(fetched 1)" = 1
reboot_dev 1
check "dev1: commits v2 after the trial boot" wait_for 20 dstatus 1 '.system.installed.version == "2" and .device.boot_check.outcome == "committed"'

# install = manual
cut_in_install 2 manual
check "dev2: waits for the operator" wait_for 60 grep -q "install = manual: waiting for 'shoal install --fetched'" dev2.log
expect_exit 0 "dev2: shoal install --fetched" "$SHOAL" install --fetched --socket "$T/dev2.sock"
check "dev2: hangs in post-install" wait_for 30 held 2
power_cut 2
startdev 2
check "dev2: abandoned at the boot check" grep -q "interrupted in phase post-install" dev2.log
check "dev2: waits for the operator again" wait_for 10 grep -q "install = manual: waiting for 'shoal install --fetched'" dev2.log
check "dev2: status: fetched" dstatus 2 '.device.state == "fetched" and .device.version == "2"'
expect_exit 0 "dev2: shoal install --fetched, again" "$SHOAL" install --fetched --socket "$T/dev2.sock"
check "dev2: installed, reboot-command ran" wait_for 30 reboots 2 1
check "dev2: v2 was fetched once" test "$(fetched 2)" = 1
done_testing
