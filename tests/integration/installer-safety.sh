#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The A/B installer's safety rules, each found broken once (file-backed
# slots, the file bootloader backend, the boot simulator):
#   - never write into the slot the bootloader boots next
#   - `shoal rollback` never makes a slot primary that did not pass its
#     health checks, and notices a fallback
#   - the booted slot comes from the kernel command line, not a fixed
#     booted-slot that disagrees with it
#   - a keyring vouched for only by --trust is not kept, and no keyring
#     floor moves before a commit
#   - a refused release stays refused with an extra signature
#   - a boot-check repeated after the commit began finishes it
#   - a trial in the bootloader that no install records is undone
#   - a hook that leaves a child holding its output is not "timed out"
#
# usage: installer-safety.sh SHOAL GEN-IMAGE
set -u
SHOAL=$1
GEN=$2
. "$(dirname "$0")/../lib/tap.sh"

T=$(mktemp -d)
MNT= LOOP=
cleanup() {
	[ -z "$MNT" ] || umount "$MNT" 2>/dev/null
	[ -z "$LOOP" ] || losetup -d "$LOOP" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
export SHOAL_NO_PROGRESS=1
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
export SHOAL_CONTROL_SOCKET="$T/no-daemon.sock"

"$SHOAL" keygen -o root >/dev/null 2>&1
"$GEN" --seed 21 --size $((2 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 22 --change 0.2 -o v2.img
"$GEN" --from v2.img --seed 23 --change 0.2 -o v3.img
mkrel() { # NAME IMAGE COUNTER
	"$SHOAL" release create --image "$2" --product acme --version "$1" --counter "$3" --key root.key \
		--created @1700000000 -o "r$1" >/dev/null 2>&1
}
check "releases v1, v2, v3" sh -c "$(declare -f mkrel); SHOAL='$SHOAL'; mkrel 1 v1.img 1 && mkrel 2 v2.img 2 && mkrel 3 v3.img 3"

# mkdev NAME [SYSTEM-LINES]: slot A holds v1 (unknown to shoal), A boots.
mkdev() {
	local d="$T/$1"
	rm -rf "$d"
	mkdir -p "$d/hooks/pre-install.d" "$d/hooks/commit.d" "$d/hooks/rollback.d" "$d/health"
	truncate -s 4M "$d/slot-a" "$d/slot-b"
	dd if=v1.img of="$d/slot-a" conv=notrunc status=none
	cat >"$d/system.conf" <<CONF
[system]
product = acme
bootloader = file
state-dir = $d/state
hooks-dir = $d/hooks
health-dir = $d/health
health-timeout = 10s
hook-timeout = 10s
reboot = none
reboot-command = echo reboot >>$d/reboots
trust = $T/root.pub
${2:-boot-slot-file = $d/booted}

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
	printf 'shoal_slot=A\n' >"$d/env"
	[ -n "${2:-}" ] || "$SHOAL" --system-conf "$d/system.conf" boot-sim >/dev/null
}
sh_() { "$SHOAL" --system-conf "$T/$1/system.conf" "${@:2}"; }
status_is() { sh_ "$1" status --json | jq -e "$2" >/dev/null; }
booted() { sed -n 's/^slot=//p' "$T/$1/booted"; }
# install_commit DEV REL: install, power on, boot-check (commits)
install_commit() { sh_ "$1" install "$2" >/dev/null 2>&1 && sh_ "$1" boot-sim >/dev/null && sh_ "$1" boot-check >/dev/null 2>&1; }

# --- never write into the slot the bootloader boots next -------------------------
# rolled back during the trial of B without a reboot: A is primary, B runs
mkdev w1
sh_ w1 install r2 >/dev/null 2>&1
sh_ w1 boot-sim >/dev/null
sh_ w1 rollback --reboot none >/dev/null 2>&1
check "rolled back without a reboot: A boots next, B runs" sh -c "grep -qx shoal_slot=A '$T/w1/env' && test \"\$(sed -n 's/^slot=//p' '$T/w1/booted')\" = B"
expect_exit 137 "an install into A cut in its write phase" env SHOAL_INSTALLER_CRASH_AT=write "$SHOAL" --system-conf "$T/w1/system.conf" install r3
check "... made the running B primary before writing A" grep -qx shoal_slot=B "$T/w1/env"
check "... and the next power on boots B, not the half-written A" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ w1 boot-sim | grep -qx 'booted slot B'"
expect_exit 0 "... the install then goes through" sh_ w1 install r3
check "... with A on trial" sh -c "grep -qx shoal_slot=A '$T/w1/env' && grep -qx upgrade_available=1 '$T/w1/env'"

# --- rollback: only to a slot that booted and passed its health checks -----------
mkdev rb1
sh_ rb1 install r2 >/dev/null 2>&1
check "trial boots 1 and 2 go to B, the 3rd falls back to A" bash -c "$(declare -f sh_); T='$T'; SHOAL='$SHOAL'; sh_ rb1 boot-sim | grep -qx 'booted slot B' && sh_ rb1 boot-sim | grep -qx 'booted slot B' && sh_ rb1 boot-sim | grep -qx 'booted slot A'"
expect_exit 5 "rollback after the fallback (before boot-check) notices it" sh_ rb1 rollback
output_has "... says the bootloader fell back" "never completed a boot"
check "... slot B is bad, v2 refused" status_is rb1 '.system.slots[1].state == "bad" and (.system | has("pending") | not)'
expect_exit 1 "a second rollback does not make the failed B primary" sh_ rb1 rollback
output_has "... saying why" "slot B holds no verified release that passed its health checks"
check "... A stays primary" grep -qx shoal_slot=A "$T/rb1/env"

mkdev rb2
sh_ rb2 install r2 >/dev/null 2>&1
expect_exit 0 "rollback before the reboot cancels the trial" sh_ rb2 rollback
expect_exit 1 "rollback again does not commit the never-booted B" sh_ rb2 rollback
check "... A stays primary, no trial" sh -c "grep -qx shoal_slot=A '$T/rb2/env' && grep -qx upgrade_available=0 '$T/rb2/env'"
install_commit rb2 r2 && install_commit rb2 r3
check "v2 committed in B, then v3 in A" status_is rb2 '.system.slots[1].state == "good" and .system.slots[0].state == "good" and .system.installed.version == "3"'
expect_exit 5 "with nothing pending, rollback from A to the good B works (exit 5: rolled back)" sh_ rb2 rollback
check "... B is primary" grep -qx shoal_slot=B "$T/rb2/env"

# --- the slot that runs is never the target --------------------------------------
# booted-slot = A pinned, but the kernel command line says B booted
printf 'console=ttyS0 root=/dev/mmcblk0p3 shoal.slot=B\n' >"$T/ck.cmdline"
mkdev ck "booted-slot = A
cmdline = $T/ck.cmdline"
dd if=v2.img of="$T/ck/slot-b" conv=notrunc status=none
b=$(sha256sum <"$T/ck/slot-b")
expect_exit 1 "booted-slot contradicting the command line: install refuses" sh_ ck install r3
output_has "... naming both" "booted-slot = A.*says slot B booted"
check "... the running slot B is untouched" test "$(sha256sum <"$T/ck/slot-b")" = "$b"
printf 'console=ttyS0\n' >"$T/ck.cmdline"
expect_exit 0 "a command line naming no slot: booted-slot stands in" sh_ ck install r3

# a block-device slot that is mounted is not written (O_EXCL)
if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null || ! command -v mkfs.ext4 >/dev/null; then
	skip "a mounted block-device slot is refused" "needs root, losetup and mkfs.ext4"
else
	mkdev blk
	truncate -s 4M "$T/blk/loop.img"
	mkfs.ext4 -q "$T/blk/loop.img" 2>/dev/null
	if LOOP=$(losetup -f --show "$T/blk/loop.img" 2>/dev/null) && mkdir -p "$T/mnt" && mount "$LOOP" "$T/mnt" 2>/dev/null; then
		MNT=$T/mnt
		sed -i "s|device = $T/blk/slot-b|device = $LOOP|" "$T/blk/system.conf"
		expect_exit 1 "a mounted block-device slot is refused" sh_ blk install r2
		output_has "... as in use" "slot B \($LOOP\) is in use"
		check "... its file system is intact" test -d "$T/mnt/lost+found"
		umount "$MNT" && MNT=
		expect_exit 0 "... and written once unmounted" sh_ blk install r2
	else
		skip "a mounted block-device slot is refused" "no loop device here"
	fi
fi

# --- keyrings: --trust is for one install; floors move at a commit ----------------
"$SHOAL" keygen -o other >/dev/null 2>&1
"$SHOAL" keygen -o rel >/dev/null 2>&1
"$SHOAL" keyring create --root other.key --add rel.pub --version 5 -o kr-other.shoal >/dev/null 2>&1
"$SHOAL" keyring create --root root.key --add rel.pub --version 7 -o kr-root.shoal >/dev/null 2>&1
"$SHOAL" release create --image v2.img --product acme --version 2 --counter 2 --key rel.key --keyring kr-other.shoal -o rko >/dev/null 2>&1
"$SHOAL" release create --image v2.img --product acme --version 2 --counter 2 --key rel.key --keyring kr-root.shoal -o rkr >/dev/null 2>&1
"$SHOAL" release create --image v2.img --product acme --version 2b --counter 2 --key rel.key -o rkn >/dev/null 2>&1
mkdev kr
expect_exit 3 "a release whose keyring only another root signed is refused" sh_ kr install rko
expect_exit 0 "... and installs with --trust other.pub" sh_ kr install --trust other.pub rko
check "... without raising the keyring floor or keeping that keyring" status_is kr '.system.floors.keyring == 0'
expect_exit 0 "... cancelled" sh_ kr rollback
expect_exit 3 "... the --trust keyring does not vouch for a later release without one" sh_ kr install rkn
expect_exit 0 "a keyring signed by [system] trust installs" sh_ kr install rkr
check "... its floor waits for the commit" status_is kr '.system.floors.keyring == 0'
sh_ kr boot-sim >/dev/null
expect_exit 0 "... boot-check commits" sh_ kr boot-check
check "... and raises the keyring floor to 7" status_is kr '.system.floors.keyring == 7 and .system.floors.counter == 2'

# --- a refused release stays refused with a signature added ------------------------
"$SHOAL" release create --image v2.img --product acme --version 2 --counter 2 --key root.key --key other.key \
	--created @1700000000 -o r2x >/dev/null 2>&1
check "v2 signed once more is another manifest of the same signed body" sh -c "! cmp -s r2/manifest.shoal r2x/manifest.shoal && test \$(stat -c %s r2x/manifest.shoal) -gt \$(stat -c %s r2/manifest.shoal)"
mkdev rf
printf '#!/bin/sh\necho "no network"\nexit 1\n' >"$T/rf/health/50-net"
chmod +x "$T/rf/health/50-net"
sh_ rf install r2 >/dev/null 2>&1
sh_ rf boot-sim >/dev/null
expect_exit 5 "v2 fails its health check: rolled back" sh_ rf boot-check
sh_ rf boot-sim >/dev/null
rm "$T/rf/health/50-net"
expect_exit 4 "v2 with an extra signature is still refused" sh_ rf install r2x
output_has "... naming the first refusal" "refused on this device: .*no network"
check "... slot B was not written again" status_is rf '.system.slots[1].state == "bad" and (.system | has("pending") | not)'

# --- past the point of no return, boot-check only finishes the commit --------------
mkdev cm
printf '#!/bin/sh\necho "$SHOAL_VERSION" >>%s/commit.log\n' "$T/cm" >"$T/cm/hooks/commit.d/10-log"
chmod +x "$T/cm/hooks/commit.d/10-log"
sh_ cm install r2 >/dev/null 2>&1
sh_ cm boot-sim >/dev/null
expect_exit 137 "boot-check killed once the commit began" env SHOAL_INSTALLER_CRASH_AT=commit "$SHOAL" --system-conf "$T/cm/system.conf" boot-check
printf '#!/bin/sh\necho "flaky sensor"\nexit 1\n' >"$T/cm/health/50-sensor"
chmod +x "$T/cm/health/50-sensor"
expect_exit 0 "boot-check again finishes the commit, whatever a health check says now" sh_ cm boot-check
output_has "... and says so" "commit of 2 resumed"
check "... v2 good in B, floor 2, no trial" status_is cm '.system.slots[1].state == "good" and .system.floors.counter == 2 and .system.bootloader_env.trial == false'
check "... the commit hooks ran once" test "$(wc -l <"$T/cm/commit.log")" = 1

# --- a hook that exits but leaves a child holding its output -----------------------
mkdev bg
printf '#!/bin/sh\nsleep 120 &\necho $! >%s/bg.pid\necho "started the helper"\nexit 0\n' "$T/bg" >"$T/bg/hooks/pre-install.d/10-bg"
chmod +x "$T/bg/hooks/pre-install.d/10-bg"
expect_exit 0 "a hook that exits 0 leaving a child on its stdout does not time out" sh_ bg install r2
output_has "... its output is kept" "hook 10-bg: exit 0: started the helper"
# gone, or a zombie waiting for whatever reaps orphans here
check "... and the child left behind is gone" sh -c "s=\$(cut -d' ' -f3 /proc/\$(cat '$T/bg/bg.pid')/stat 2>/dev/null); [ -z \"\$s\" ] || [ \"\$s\" = Z ]"

# --- the time floor never runs ahead of the clock -----------------------------------
"$SHOAL" release create --image v2.img --product acme --version 2f --counter 2 --key root.key --created 2090-01-01 -o r2f >/dev/null 2>&1
"$SHOAL" release create --image v3.img --product acme --version 3e --counter 3 --key root.key --expires +30d -o r3e >/dev/null 2>&1
mkdev tf
install_commit tf r2f
check "a release stamped in 2090 commits, the time floor stays at the clock" status_is tf ".system.floors.counter == 2 and .system.floors.time <= $(date +%s) + 60"
expect_exit 0 "... and a release expiring in 30 days still installs" sh_ tf install r3e

# --- a trial in the bootloader that no install records ------------------------------
mkdev sx
printf 'shoal_slot=B\nupgrade_available=1\nbootcount=0\nbootlimit=2\n' >"$T/sx/env"
expect_exit 0 "a stray trial of the other slot: boot-check cancels it" sh_ sx boot-check
output_has "... and says so" "trial of slot B that no install records was cancelled"
check "... A primary, no trial" sh -c "grep -qx shoal_slot=A '$T/sx/env' && grep -qx upgrade_available=0 '$T/sx/env'"
printf 'shoal_slot=B\nupgrade_available=1\nbootcount=0\nbootlimit=2\n' >"$T/sx/env"
sh_ sx boot-sim >/dev/null
expect_exit 5 "running B on a trial no install records: boot-check goes back to A" sh_ sx boot-check
output_has "... and says so" "slot B runs on a trial that no install records"
check "... A primary, no trial" sh -c "grep -qx shoal_slot=A '$T/sx/env' && grep -qx upgrade_available=0 '$T/sx/env'"

# the bootloader environment cannot be written when the trial is set
if [ "$(id -u)" = 0 ] && mkdir -p "$T/envfs" && mount -t tmpfs -o size=64k tmpfs "$T/envfs" 2>/dev/null; then
	MNT=$T/envfs
	mkdev fs
	printf 'shoal_slot=A\n' >"$T/envfs/env"
	sed -i "s|^env = .*|env = $T/envfs/env|" "$T/fs/system.conf"
	# a post-install hook fills the file system the environment lives on
	mkdir -p "$T/fs/hooks/post-install.d"
	printf '#!/bin/sh\nhead -c 100000 /dev/zero >%s/fill 2>/dev/null\nexit 0\n' "$T/envfs" >"$T/fs/hooks/post-install.d/10-fill"
	chmod +x "$T/fs/hooks/post-install.d/10-fill"
	expect_exit 1 "set_trial fails (no space for the environment)" sh_ fs install r2
	check "... the install stays in mark-trial for boot-check" status_is fs '.system.pending.phase == "mark-trial"'
	rm -f "$T/envfs/fill"
	expect_exit 0 "... boot-check reads the environment: not switched, abandoned" sh_ fs boot-check
	output_has "... and says so" "abandoned"
	check "... A still primary" grep -qx shoal_slot=A "$T/envfs/env"
	umount "$MNT" && MNT=
else
	skip "set_trial failing keeps the install for boot-check" "needs root and tmpfs"
fi

done_testing
