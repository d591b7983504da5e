#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The A/B installer end to end on file-backed devices: two slot files per
# device, a real bootloader environment (U-Boot's through the real
# fw_setenv/fw_printenv files, a real grubenv through grub-editenv, or the
# file backend), and the boot simulator standing in for power cycles.
#   - A -> B -> commit with each backend
#   - B -> A when a health check fails, when a commit hook fails, and when
#     the new slot never reaches boot-check (bootcount runs out)
#   - a rolled-back release is not installed again; an older one is refused
#   - bad input: truncated bundles, a slot too small, a missing slot, a
#     corrupt environment: clear error, the active slot's bytes unchanged
#   - delta: v1 -> v2 copies the shared chunks from the active slot and
#     reads from the bundle exactly the chunks v1 lacks
#   - an install killed in a phase resumes without rewriting what it wrote
#
# usage: installer-ab.sh SHOAL GEN-IMAGE
set -u
SHOAL=$1
GEN=$2
. "$(dirname "$0")/../lib/tap.sh"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
export SHOAL_NO_PROGRESS=1
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
# no shoald here: status must not find one by accident
export SHOAL_CONTROL_SOCKET="$T/no-daemon.sock"

# --- releases -----------------------------------------------------------------
"$SHOAL" keygen -o root >/dev/null 2>&1
"$GEN" --seed 11 --size $((6 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 12 --change 0.2 --insert 10 -o v2.img
"$GEN" --from v2.img --seed 13 --change 0.2 -o v3.img
mkrel() { # NAME IMAGE COUNTER
	"$SHOAL" release create --image "$2" --product acme --version "$1" --counter "$3" --key root.key -o "r$1" \
		>/dev/null 2>&1 && "$SHOAL" bundle create "r$1" -o "b$1.shoal" >/dev/null 2>&1
}
check "releases v1, v2, v3 and their bundles" sh -c "$(declare -f mkrel); SHOAL='$SHOAL'; mkrel 1 v1.img 1 && mkrel 2 v2.img 2 && mkrel 3 v3.img 3"

sum() { sha256sum "$1" | cut -c1-64; }
# b2sum of the first N bytes of a file: the manifest's image hash
imghash() { head -c "$(stat -c %s "$2")" "$1" | b2sum -l 256 | cut -c1-64; }

# --- devices ------------------------------------------------------------------
# mkdev NAME BACKEND [SLOT_B_SIZE]: slot A holds v1 as from the factory
# (unknown to shoal), the bootloader boots A.
mkdev() {
	local d="$T/$1" be=$2 bsize=${3:-16M}
	rm -rf "$d"
	mkdir -p "$d/hooks/pre-install.d" "$d/hooks/commit.d" "$d/hooks/rollback.d" "$d/health"
	truncate -s 16M "$d/slot-a"
	truncate -s "$bsize" "$d/slot-b"
	dd if=v1.img of="$d/slot-a" conv=notrunc status=none
	cat >"$d/system.conf" <<CONF
[system]
product = acme
bootloader = $be
state-dir = $d/state
hooks-dir = $d/hooks
health-dir = $d/health
health-timeout = 10s
hook-timeout = 10s
reboot = now
reboot-command = echo reboot >>$d/reboots
trust = $T/root.pub
boot-slot-file = $d/booted

[slot.rootfs.0]
device = $d/slot-a
bootname = A

[slot.rootfs.1]
device = $d/slot-b
bootname = B
CONF
	case $be in
	file)
		printf 'shoal_slot=A\n' >"$d/env"
		printf '[file]\nenv = %s\nbootlimit = 2\n' "$d/env" >>"$d/system.conf"
		;;
	uboot)
		truncate -s 16K "$d/env1" "$d/env2"
		printf '%s 0x0 0x4000\n%s 0x0 0x4000\n' "$d/env1" "$d/env2" >"$d/fw_env.config"
		printf 'bootcmd=run shoal_boot\nshoal_slot=A\n' >"$d/default.env"
		fw_setenv -c "$d/fw_env.config" -f "$d/default.env" bootlimit 2 2>/dev/null
		printf '[uboot]\nfw-env-config = %s\nbootlimit = 2\n' "$d/fw_env.config" >>"$d/system.conf"
		;;
	grub)
		grub-editenv "$d/grubenv" create
		grub-editenv "$d/grubenv" set ORDER="A B" A_OK=1 B_OK=1 A_TRY=0 B_TRY=0
		printf '[grub]\ngrubenv = %s\n' "$d/grubenv" >>"$d/system.conf"
		;;
	esac
	"$SHOAL" --system-conf "$d/system.conf" boot-sim >/dev/null
}
sh_() { "$SHOAL" --system-conf "$T/$1/system.conf" "${@:2}"; }
# status_is DEV JQ-FILTER: shoal status --json of DEV satisfies the filter
status_is() { sh_ "$1" status --json | jq -e "$2" >/dev/null; }
booted() { sed -n 's/^slot=//p' "$T/$1/booted"; }

# --- A -> B -> commit with each backend ---------------------------------------
for be in file uboot grub; do
	case $be in
	uboot) command -v fw_setenv >/dev/null || { skip "uboot backend" "fw_setenv missing"; continue; } ;;
	grub) command -v grub-editenv >/dev/null || { skip "grub backend" "grub-editenv missing"; continue; } ;;
	esac
	mkdev "$be" "$be"
	a_before=$(sum "$T/$be/slot-a")
	expect_exit 0 "$be: install v2 from a bundle" sh_ "$be" install b2.shoal
	output_has "$be: says where it went" "installed 2 \(counter 2\) into slot B"
	output_has "$be: and that it reboots" "rebooting into slot B on trial"
	check "$be: reboot-command ran" grep -qx reboot "$T/$be/reboots"
	check "$be: slot B holds the v2 image" test "$(imghash "$T/$be/slot-b" v2.img)" = "$(b2sum -l 256 v2.img | cut -c1-64)"
	check "$be: slot A untouched" test "$(sum "$T/$be/slot-a")" = "$a_before"
	check "$be: status: trial pending in the bootloader" status_is "$be" '.system.bootloader_env.trial == true'
	check "$be: status: install waits for its reboot" status_is "$be" '.system.pending.phase == "reboot-pending"'
	expect_exit 0 "$be: boot-check before the reboot changes nothing" sh_ "$be" boot-check
	output_has "$be: ... it says the trial waits" "waits for its trial boot"
	check "$be: power on boots B" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ $be boot-sim | grep -qx 'booted slot B'"
	expect_exit 0 "$be: boot-check commits" sh_ "$be" boot-check
	output_has "$be: committed v2" "committed 2 \(counter 2\)"
	output_has "$be: built-in health check ran" "health state-db: ok"
	check "$be: status: no trial left" status_is "$be" '.system.bootloader_env.trial == false and .system.bootloader_env.primary == "B"'
	check "$be: status: B is good with v2" status_is "$be" '.system.slots[1].state == "good" and .system.slots[1].version == "2" and .system.installed.version == "2"'
	check "$be: status: the counter floor is 2" status_is "$be" '.system.floors.counter == 2 and (.system | has("pending") | not)'
	expect_exit 0 "$be: human status" sh_ "$be" status
	output_has "$be: ... shows the booted slot" "booted from slot B"
	output_has "$be: ... and the slots" "\\* *B good"
	case $be in
	uboot)
		fw_printenv -c "$T/$be/fw_env.config" >"$T/$be/env.txt" 2>/dev/null
		check "uboot: fw_printenv shows shoal_slot=B, upgrade_available=0" \
			sh -c "grep -qx shoal_slot=B '$T/$be/env.txt' && grep -qx upgrade_available=0 '$T/$be/env.txt' && grep -qx 'bootcmd=run shoal_boot' '$T/$be/env.txt'"
		;;
	grub)
		check "grub: grub-editenv lists ORDER=B A, B_OK=1, no trial" \
			sh -c "grub-editenv '$T/$be/grubenv' list | grep -qx 'ORDER=B A' && grub-editenv '$T/$be/grubenv' list | grep -qx B_OK=1 && grub-editenv '$T/$be/grubenv' list | grep -qx SHOAL_TRIAL="
		check "grub: the environment block is still 1 KiB" test "$(stat -c %s "$T/$be/grubenv")" = 1024
		;;
	esac
	check "$be: stays on B across reboots" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ $be boot-sim >/dev/null; sh_ $be boot-sim | grep -qx 'booted slot B'"
	expect_exit 4 "$be: the older v1 is refused" sh_ "$be" install b1.shoal
	output_has "$be: ... because of the counter floor" "below the installed floor 2"
done

# --- B -> A: a health check fails ---------------------------------------------
mkdev hf file
printf '#!/bin/sh\necho "disk /data missing"\nexit 1\n' >"$T/hf/health/50-data"
chmod +x "$T/hf/health/50-data"
printf '#!/bin/sh\necho "$SHOAL_VERSION $SHOAL_SLOT $SHOAL_PHASE" >>%s/rollback.log\n' "$T/hf" >"$T/hf/hooks/rollback.d/10-log"
chmod +x "$T/hf/hooks/rollback.d/10-log"
sh_ hf install b2.shoal >/dev/null 2>&1
sh_ hf boot-sim >/dev/null
expect_exit 5 "health fails: boot-check rolls back (exit 5)" sh_ hf boot-check
output_has "the report quotes the failing check" "health 50-data: failed: disk /data missing"
check "rollback hook ran with the documented environment" grep -qx "2 B rollback" "$T/hf/rollback.log"
check "reboot-command ran to go back" test "$(wc -l <"$T/hf/reboots")" = 2
check "the next power on boots A" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ hf boot-sim | grep -qx 'booted slot A'"
expect_exit 0 "boot-check on A has nothing to do" sh_ hf boot-check
output_has "... no install pending" "no install pending"
expect_exit 4 "the rolled-back v2 is not installed again" sh_ hf install b2.shoal
output_has "... and the message says why" "refused on this device: .*disk /data missing"
expect_exit 0 "a newer v3 still installs" sh_ hf install b3.shoal

# --- B -> A: a commit hook fails ----------------------------------------------
mkdev ch file
printf '#!/bin/sh\necho "config migration failed for $SHOAL_VERSION"\nexit 3\n' >"$T/ch/hooks/commit.d/20-migrate"
chmod +x "$T/ch/hooks/commit.d/20-migrate"
sh_ ch install --reboot none b2.shoal >/dev/null 2>&1
check "--reboot none leaves the reboot to the operator" test ! -e "$T/ch/reboots"
sh_ ch boot-sim >/dev/null
expect_exit 5 "commit hook fails: rolled back (exit 5)" sh_ ch boot-check --json
output_has "outcome rolled-back in JSON" '"outcome": "rolled-back"'
check "bootloader points at A again" grep -qx shoal_slot=A "$T/ch/env"
check "the counter floor was not raised" status_is ch '.system.floors.counter == 0'
expect_exit 4 "v2 refused after the commit hook said no" sh_ ch install b2.shoal

# --- B -> A: the new slot never reaches boot-check ----------------------------
mkdev nb file
sh_ nb install b2.shoal >/dev/null 2>&1
check "trial boots 1 and 2 go to B (bootlimit 2)" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ nb boot-sim | grep -qx 'booted slot B' && sh_ nb boot-sim | grep -qx 'booted slot B'"
check "the 3rd power on falls back to A (altbootcmd)" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ nb boot-sim | grep -qx 'booted slot A'"
check "the environment has no trial left" sh -c "grep -qx upgrade_available=0 '$T/nb/env' && grep -qx shoal_slot=A '$T/nb/env'"
expect_exit 5 "boot-check notices the fallback (exit 5)" sh_ nb boot-check
output_has "... and says so" "never completed a boot"
expect_exit 4 "the release that never booted is refused" sh_ nb install b2.shoal

# the same with U-Boot's real environment
if command -v fw_setenv >/dev/null; then
	mkdev nbu uboot
	sh_ nbu install b2.shoal >/dev/null 2>&1
	for i in 1 2 3; do sh_ nbu boot-sim >/dev/null; done
	check "uboot: fallback after bootcount passed bootlimit" test "$(booted nbu)" = A
	check "uboot: fw_printenv shows the fallback" sh -c "fw_printenv -c '$T/nbu/fw_env.config' 2>/dev/null | grep -qx shoal_slot=A"
	expect_exit 5 "uboot: boot-check notices the fallback" sh_ nbu boot-check
fi

# --- operator verbs -------------------------------------------------------------
mkdev op file
sh_ op install --reboot none b2.shoal >/dev/null 2>&1
expect_exit 0 "rollback before the reboot cancels the trial" sh_ op rollback
check "... the bootloader boots A" grep -qx shoal_slot=A "$T/op/env"
expect_exit 0 "... and the release is not refused" sh_ op install --reboot none b2.shoal
sh_ op boot-sim >/dev/null
expect_exit 0 "mark-good commits the trial" sh_ op mark-good
output_has "... committed" "committed 2"
expect_exit 1 "mark-good with nothing on trial fails" sh_ op mark-good
expect_exit 1 "rollback with nothing pending needs a verified release in the other slot" sh_ op rollback
output_has "... slot A holds none (shoal never wrote it)" "slot A holds no verified release"

# --- delta: v1 -> v2 reuses the active slot's chunks ----------------------------
mkdev dl file
sh_ dl install r1 >/dev/null 2>&1 && sh_ dl boot-sim >/dev/null && sh_ dl boot-check >/dev/null 2>&1
check "delta: v1 committed in B" test "$(booted dl)" = B
expect_exit 0 "delta: install v2 with --json" sh_ dl install --json b2.shoal
reused=$(printf '%s\n' "$TAP_OUT" | sed -n 's/.*"bytes_reused": \([0-9]*\).*/\1/p')
read_=$(printf '%s\n' "$TAP_OUT" | sed -n 's/.*"bytes_read": \([0-9]*\).*/\1/p')
"$SHOAL" release show --json r1 | jq -r '.chunks[].id' | sort -u >ids1
"$SHOAL" release show --json r2 | jq -r '.chunks[] | "\(.id) \(.length)"' | sort -u >ids2
lacks=$(join -v 2 ids1 ids2 | awk '{s += $2} END {print s + 0}')
echo "# delta v1 -> v2: $reused bytes reused from the active slot, $read_ read from the bundle; v1 lacks $lacks bytes of v2's chunks"
check "delta: bytes reused > 0" test "${reused:-0}" -gt 0
check "delta: bytes read from the bundle == bytes of chunks v1 lacks" test "${read_:-x}" = "$lacks"
sh_ dl boot-sim >/dev/null
check "delta: v2 commits" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ dl boot-check | grep -q 'committed 2'"

# --- bad input: clear error, the active slot untouched --------------------------
mkdev bad file
a=$(sum "$T/bad/slot-a")
size=$(stat -c %s b2.shoal)
for cut in 0 64 4096 $((size / 2)) $((size - 1)); do
	head -c "$cut" b2.shoal >"trunc-$cut.shoal"
	expect_exit 3 "bundle truncated at $cut bytes is refused" sh_ bad install "trunc-$cut.shoal"
	output_has "... with a message naming the file" "trunc-$cut.shoal"
done
check "truncated bundles left slot A as it was" test "$(sum "$T/bad/slot-a")" = "$a"
check "no install pending after them" status_is bad '.system | has("pending") | not'

mkdev small file 1M
a=$(sum "$T/small/slot-a")
expect_exit 4 "a slot too small is refused" sh_ small install b2.shoal
output_has "... naming both sizes" "does not fit the slot of 1048576 bytes"
check "... slot A unchanged" test "$(sum "$T/small/slot-a")" = "$a"

mkdev miss file
rm "$T/miss/slot-b"
a=$(sum "$T/miss/slot-a")
expect_exit 1 "a missing slot device is an error" sh_ miss install b2.shoal
output_has "... naming the device" "slot B \(.*/miss/slot-b\): No such file"
check "... slot A unchanged" test "$(sum "$T/miss/slot-a")" = "$a"

mkdev ce file
a=$(sum "$T/ce/slot-a")
printf 'shoal_slot=A\n\001\002\377garbage' >"$T/ce/env"
expect_exit 1 "a corrupt file environment is an error" sh_ ce install b2.shoal
output_has "... saying so" "corrupt environment"
check "... slot A unchanged" test "$(sum "$T/ce/slot-a")" = "$a"
if command -v fw_setenv >/dev/null; then
	mkdev ceu uboot
	a=$(sum "$T/ceu/slot-a")
	printf 'XXXXXXXX' | dd of="$T/ceu/env1" bs=1 seek=8 conv=notrunc status=none
	printf 'XXXXXXXX' | dd of="$T/ceu/env2" bs=1 seek=8 conv=notrunc status=none
	expect_exit 1 "a corrupt U-Boot environment is an error" sh_ ceu install b2.shoal
	output_has "... saying so" "corrupt environment"
	check "... slot A unchanged" test "$(sum "$T/ceu/slot-a")" = "$a"
fi
if command -v grub-editenv >/dev/null; then
	mkdev ceg grub
	a=$(sum "$T/ceg/slot-a")
	head -c 1024 /dev/zero >"$T/ceg/grubenv"
	expect_exit 1 "a corrupt grubenv is an error" sh_ ceg install b2.shoal
	output_has "... saying so" "corrupt environment"
	check "... slot A unchanged" test "$(sum "$T/ceg/slot-a")" = "$a"
fi

# a pre-install hook that says no: nothing touched, nothing refused
mkdev pre file
printf '#!/bin/sh\necho "battery too low"\nexit 1\n' >"$T/pre/hooks/pre-install.d/10-battery"
chmod +x "$T/pre/hooks/pre-install.d/10-battery"
b=$(sum "$T/pre/slot-b")
expect_exit 1 "a pre-install hook aborts the install" sh_ pre install b2.shoal
output_has "... quoting it" "battery too low"
check "... slot B untouched" test "$(sum "$T/pre/slot-b")" = "$b"
rm "$T/pre/hooks/pre-install.d/10-battery"
expect_exit 0 "... and the release installs once the hook agrees" sh_ pre install b2.shoal

# --- killed in a phase: resume without rewriting --------------------------------
mkdev kill file
expect_exit 137 "killed right after entering verify-slot" env SHOAL_INSTALLER_CRASH_AT=verify-slot "$SHOAL" --system-conf "$T/kill/system.conf" install b2.shoal
check "the bootloader was not switched" grep -qx shoal_slot=A "$T/kill/env"
expect_exit 0 "install again resumes" sh_ kill install --json b2.shoal
output_has "... keeping what was written" '"bytes_in_slot": [1-9]'
expect_exit 0 "the resumed install is the one on trial" sh_ kill rollback
expect_exit 137 "killed right after entering mark-trial" env SHOAL_INSTALLER_CRASH_AT=mark-trial "$SHOAL" --system-conf "$T/kill/system.conf" install b3.shoal
check "... the bootloader still boots A" grep -qx shoal_slot=A "$T/kill/env"
expect_exit 0 "boot-check abandons the install cut short before the switch" sh_ kill boot-check
output_has "... and says so" "abandoned"
check "... and v3 is not refused" status_is kill '.system | has("pending") | not'
expect_exit 0 "... v3 installs again" sh_ kill install b3.shoal
done_testing
