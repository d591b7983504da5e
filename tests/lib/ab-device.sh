# SPDX-License-Identifier: LGPL-2.1-or-later
# A/B devices for the daemon tests (device-install.sh, campaign-install.sh):
# two file-backed slots, the file bootloader, a system.conf. Sourced after
# fleet.sh; expects $T, $SHOAL and v1.img in $T.

# mkdev N: slot files, a file bootloader environment and system.conf; the
# device boots slot A holding v1 as from the factory (unknown to shoal).
mkdev() {
	local d="$T/dev$1"
	mkdir -p "$d/hooks" "$d/health"
	truncate -s 16M "$d/slot-a" "$d/slot-b"
	dd if=v1.img of="$d/slot-a" conv=notrunc status=none
	printf 'shoal_slot=A\n' >"$d/env"
	cat >"$d/system.conf" <<CONF
[system]
product = demo
bootloader = file
state-dir = $d
hooks-dir = $d/hooks
health-dir = $d/health
health-timeout = 10s
reboot = none
reboot-command = echo reboot >>$d/reboots
trust = $T/root.pub
boot-slot-file = $d/booted

[file]
env = $d/env
bootlimit = 2

[slot.rootfs.0]
device = $d/slot-a
bootname = A

[slot.rootfs.1]
device = $d/slot-b
bootname = B
CONF
	"$SHOAL" --system-conf "$d/system.conf" boot-sim >/dev/null
}
sysc() { "$SHOAL" --system-conf "$T/dev$1/system.conf" "${@:2}"; }

# shoald on device N (dev$N.conf, written by the test): started, stopped,
# rebooted (stop, the boot simulator, start), its status asked with jq
declare -A DPID
startdev() { start "dev$1"; DPID[$1]=${PIDS[-1]}; }
stopdev() { kill "${DPID[$1]}" 2>/dev/null; wait "${DPID[$1]}" 2>/dev/null; }
# reboot N: what a reboot is to a device here
reboot_dev() {
	stopdev "$1"
	cp "dev$1.log" "dev$1-$(date +%s%N).log"
	sysc "$1" boot-sim >/dev/null && startdev "$1"
}
dstatus() { status "dev$1" | jq -e "$2" >/dev/null; }
reboots() { [ -f "$T/dev$1/reboots" ] && [ "$(wc -l <"$T/dev$1/reboots")" -ge "$2" ]; }

