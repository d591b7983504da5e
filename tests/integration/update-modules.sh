#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Update modules end to end with the shipped modules (modules/dir and
# modules/file) and `shoal install` on a file-backed device:
#   - a dir release (a tar made here from seeded files) installs into DEST,
#     paths with spaces included; its counter floor is its own
#   - a v2 that fails its health check rolls back to v1 exactly, and is
#     refused from then on
#   - a module whose Install fails after swapping leaves DEST as it was
#   - the file module: install, commit, rollback (mode kept)
#   - a dest outside the allowed prefixes (or with ..) is refused
#   - interrupted installs (SHOAL_INSTALLER_CRASH_AT): before Install
#     abandoned, between Install and Commit rolled back, in Commit resumed
#   - NeedsReboot=Yes: the commit waits for the next boot
#   - an unknown payload type: refused, nothing touched
#   - a Commit that fails: rolled back, refused, its counter floor where it
#     was (the floor moves only after Commit succeeded)
#
# usage: update-modules.sh SHOAL GEN-IMAGE MODULES-SRC-DIR
set -u
SHOAL=$1
GEN=$2
MODSRC=$3
. "$(dirname "$0")/../lib/tap.sh"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
export SHOAL_NO_PROGRESS=1
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT SHOAL_MODULE_ALLOW
export SHOAL_CONTROL_SOCKET="$T/no-daemon.sock"

# --- the device: A/B slots (untouched by modules), modules, their config -------
D="$T/dev"
R="$T/root with space"      # the device's file system, as far as modules go
DEST="$R/opt/my app"
FDEST="$R/etc/app.conf"
mkdir -p "$D/hooks" "$D/health" "$D/modules" "$D/modconf" "$R/opt" "$R/etc" "$T/outside"
truncate -s 1M "$D/slot-a" "$D/slot-b"
cp "$MODSRC/dir" "$MODSRC/file" "$MODSRC/module-lib.sh" "$D/modules/"
# dir with an Install that swaps the tree and then fails
cat >"$D/modules/dir-fail" <<'EOF'
#!/bin/sh
set -eu
case $1 in
Install) "${0%/*}/dir" "$@"; echo "disk exploded after the swap" >&2; exit 1 ;;
*) exec "${0%/*}/dir" "$@" ;;
esac
EOF
chmod +x "$D/modules/dir-fail"
# file with a Commit that fails while $D/commit-fails exists
cat >"$D/modules/file-cf" <<EOF
#!/bin/sh
if [ "\$1" = Commit ] && [ -e "$D/commit-fails" ]; then echo "the flash refused the commit" >&2; exit 1; fi
exec "\${0%/*}/file" "\$@"
EOF
chmod +x "$D/modules/file-cf"
printf 'allow = %s\n' "$R/opt" >"$D/modconf/dir.conf"
printf '# the same rules\nallow = %s/opt\n' "$R" >"$D/modconf/dir-fail.conf"
printf 'allow = %s\n' "$R/etc" >"$D/modconf/file.conf"
printf 'allow = %s\n' "$R/etc" >"$D/modconf/file-cf.conf"
export SHOAL_MODULE_CONF_DIR="$D/modconf"
# the dir-fail wrapper runs the dir module, which reads dir.conf
cat >"$D/health/10-app" <<EOF
#!/bin/sh
[ ! -e "$T/unhealthy" ] || { echo "the app does not answer"; exit 1; }
EOF
chmod +x "$D/health/10-app"
printf 'shoal_slot=A\n' >"$D/env"
cat >"$D/system.conf" <<CONF
[system]
product = acme
bootloader = file
state-dir = $D/state
hooks-dir = $D/hooks
health-dir = $D/health
health-timeout = 10s
modules-dir = $D/modules
module-timeout = 60s
reboot = now
reboot-command = echo reboot >>$D/reboots
trust = $T/root.pub
boot-slot-file = $D/booted

[file]
env = $D/env

[slot.rootfs.0]
device = $D/slot-a
bootname = A

[slot.rootfs.1]
device = $D/slot-b
bootname = B
CONF
sh_() { "$SHOAL" --system-conf "$D/system.conf" "$@"; }
status_is() { sh_ status --json | jq -e "$1" >/dev/null; }
check "boot simulator boots A" sh_ boot-sim

# --- payloads: seeded trees packed by a reproducible tar ------------------------
"$SHOAL" keygen -o root >/dev/null 2>&1
mktree() { # DIR SEED
	mkdir -p "$1/bin" "$1/share/with space"
	"$GEN" --seed "$2" --size 150000 --kind mixed -o "$1/bin/app"
	"$GEN" --seed "$(($2 + 1))" --size 3000 -o "$1/share/with space/data file"
	printf 'version %s\n' "$2" >"$1/VERSION"
	chmod 755 "$1/bin/app"
}
mktar() { # DIR OUT
	tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .
}
mkrel() { # NAME IMAGE TYPE COUNTER META...
	local n=$1 img=$2 type=$3 c=$4 meta=()
	shift 4
	for m in "$@"; do meta+=(--meta "$m"); done
	"$SHOAL" release create --image "$img" --product acme --version "$n" --counter "$c" --payload-type "$type" \
		"${meta[@]}" --key root.key -o "r$n" >/dev/null && "$SHOAL" bundle create "r$n" -o "$n.shoal" >/dev/null
}
for s in 1 2 3 4; do mktree "tree$s" "$((s * 10))" && mktar "tree$s" "tree$s.tar"; done
"$GEN" --seed 91 --size 5000 -o conf1
"$GEN" --seed 92 --size 7000 -o conf2
"$GEN" --seed 93 --size 6000 -o conf3
check "releases: dir, file, a failing module, bad dests, an unknown type" bash -c "
	$(declare -f mkrel); SHOAL='$SHOAL'
	mkrel d1 tree1.tar dir 1 'dest=$DEST' &&
	mkrel d2 tree2.tar dir 2 'dest=$DEST' &&
	mkrel d3 tree3.tar dir 3 'dest=$DEST' &&
	mkrel d4 tree4.tar dir 4 'dest=$DEST' needs-reboot=Yes &&
	mkrel dfail tree2.tar dir-fail 1 'dest=$DEST' &&
	mkrel f1 conf1 file 1 'dest=$FDEST' mode=0640 &&
	mkrel f2 conf2 file 2 'dest=$FDEST' mode=0600 &&
	mkrel f3 conf3 file 3 'dest=$FDEST' &&
	mkrel out tree1.tar dir 5 'dest=$T/outside/app' &&
	mkrel dotdot tree1.tar dir 5 'dest=$R/opt/../../outside/app' &&
	mkrel unknown conf1 nosuch 1 dest=/x &&
	mkrel cf1 conf1 file-cf 1 'dest=$FDEST' && mkrel cf2 conf2 file-cf 2 'dest=$FDEST'"

# same_tree A B: the same names, types, modes and bytes
listing() { (cd "$1" && find . -printf '%y %m %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
same_tree() { diff <(listing "$1") <(listing "$2"); }
no_leftovers() { test ! -e "$DEST.new" && test ! -e "$DEST.old" && test ! -e "$DEST.old.gc" && test ! -e "$D/state/module"; }

# --- dir: install v1 ------------------------------------------------------------
expect_exit 0 "dir: install d1" sh_ install d1.shoal
output_has "dir: committed at once (NeedsReboot=No)" "committed d1"
check "dir: DEST holds tree1 exactly" same_tree tree1 "$DEST"
check "dir: no DEST.new/.old, work directory removed" no_leftovers
check "dir: nothing pending, no reboot" bash -c "$(declare -f sh_ status_is); SHOAL='$SHOAL' D='$D'; status_is '(.system | has(\"pending\") | not)' && test ! -e '$D/reboots'"
check "dir: the A/B counter floor is untouched" status_is '.system.floors.counter == 0'
check "dir: A/B slots untouched" test "$(cat "$D/slot-a" "$D/slot-b" | tr -d '\0' | wc -c)" = 0
expect_exit 0 "dir: install history in events" sqlite3 "$D/state/shoal.db" \
	"SELECT phase || ':' || result FROM install_events WHERE version = 'd1' ORDER BY seq"
output_has "dir: ... download, install, health, commit" "module-download:entered"
output_has "dir: ... ended committed" "module-commit:committed"

# --- dir: v2 fails its health check ------------------------------------------
touch "$T/unhealthy"
expect_exit 5 "dir: d2 with a failing health check exits 5" sh_ install d2.shoal
output_has "dir: ... the health check is named" "the app does not answer"
check "dir: rolled back to tree1 exactly" same_tree tree1 "$DEST"
check "dir: no leftovers after the rollback" no_leftovers
rm -f "$T/unhealthy"
expect_exit 4 "dir: d2 is refused from then on" sh_ install d2.shoal
output_has "dir: ... says so" "refused on this device"
check "dir: ... DEST still tree1" same_tree tree1 "$DEST"

# --- a module whose Install fails -------------------------------------------
expect_exit 5 "dir-fail: Install fails: exit 5" sh_ install dfail.shoal
output_has "dir-fail: ... quotes the module" "disk exploded after the swap"
output_has "dir-fail: ... and says it rolled back" "rolled back"
check "dir-fail: DEST untouched (tree1)" same_tree tree1 "$DEST"
check "dir-fail: no leftovers" no_leftovers
expect_exit 5 "dir-fail: a failed Install does not refuse the release (it fails again the same way)" sh_ install dfail.shoal

# --- dests that are not allowed ----------------------------------------------
expect_exit 1 "dir: dest outside the allowed prefixes is refused" sh_ install out.shoal
output_has "dir: ... says why" "not under an allowed prefix"
check "dir: ... nothing created outside" test -z "$(ls -A "$T/outside")"
expect_exit 1 "dir: dest with .. is refused" sh_ install dotdot.shoal
output_has "dir: ... says why" "'\.\.'"
check "dir: ... DEST still tree1, nothing pending" bash -c "$(declare -f sh_ status_is same_tree listing); SHOAL='$SHOAL' D='$D'; same_tree tree1 '$DEST' && status_is '(.system | has(\"pending\") | not)'"

# --- unknown payload type ---------------------------------------------------
expect_exit 4 "unknown payload type: refused (exit 4)" sh_ install unknown.shoal
output_has "unknown: ... names the type and where it looked" "no update module for payload type 'nosuch'.*modules/nosuch"
check "unknown: nothing pending, no work directory, DEST as it was" bash -c "$(declare -f sh_ status_is same_tree listing); SHOAL='$SHOAL' D='$D'; status_is '(.system | has(\"pending\") | not)' && test ! -e '$D/state/module' && same_tree tree1 '$DEST'"

# --- file module -----------------------------------------------------------------
expect_exit 0 "file: install f1" sh_ install f1.shoal
check "file: dest holds conf1, mode 640" bash -c "cmp conf1 '$FDEST' && test \$(stat -c %a '$FDEST') = 640"
expect_exit 0 "file: install f2 (commit)" sh_ install f2.shoal
check "file: dest holds conf2, mode 600, no .old/.new" bash -c "cmp conf2 '$FDEST' && test \$(stat -c %a '$FDEST') = 600 && test ! -e '$FDEST.old' && test ! -e '$FDEST.new'"
touch "$T/unhealthy"
expect_exit 5 "file: f3 unhealthy: rolled back" sh_ install f3.shoal
rm -f "$T/unhealthy"
check "file: dest holds conf2 again, mode 600, no .old/.new" bash -c "cmp conf2 '$FDEST' && test \$(stat -c %a '$FDEST') = 600 && test ! -e '$FDEST.old' && test ! -e '$FDEST.new'"

# --- interrupted installs -----------------------------------------------------
crash() { SHOAL_INSTALLER_CRASH_AT=$1 "$SHOAL" --system-conf "$D/system.conf" install d3.shoal; }
expect_exit 137 "crash in module-download" crash module-download
check "... status shows it pending" status_is '.system.pending.phase == "module-download" and .system.pending.slot == "(update module)"'
expect_exit 0 "... boot-check abandons it" sh_ boot-check
output_has "... says so" "abandoned"
check "... DEST still tree1, no leftovers" bash -c "$(declare -f same_tree listing no_leftovers); D='$D' DEST='$DEST'; same_tree tree1 \"\$DEST\" && no_leftovers"

expect_exit 137 "crash in module-health (after Install swapped the tree)" crash module-health
check "... DEST holds tree3 meanwhile" same_tree tree3 "$DEST"
expect_exit 1 "... a new install waits for boot-check" sh_ install d3.shoal
output_has "... says so" "run 'shoal boot-check'"
expect_exit 5 "... boot-check rolls it back" sh_ boot-check
check "... DEST is tree1 again exactly, no leftovers" bash -c "$(declare -f same_tree listing no_leftovers); D='$D' DEST='$DEST'; same_tree tree1 \"\$DEST\" && no_leftovers"

expect_exit 137 "crash in module-commit" crash module-commit
expect_exit 0 "... boot-check finishes the commit (interrupted, not refused)" sh_ boot-check
output_has "... committed" "committed d3"
check "... DEST holds tree3, no leftovers" bash -c "$(declare -f same_tree listing no_leftovers); D='$D' DEST='$DEST'; same_tree tree3 \"\$DEST\" && no_leftovers"

# --- NeedsReboot=Yes ---------------------------------------------------------
expect_exit 0 "reboot: install d4 (needs-reboot=Yes)" sh_ install d4.shoal
output_has "reboot: ... reboots" "rebooting"
check "reboot: reboot-command ran" grep -qx reboot "$D/reboots"
check "reboot: DEST already holds tree4, pending" bash -c "$(declare -f sh_ status_is same_tree listing); SHOAL='$SHOAL' D='$D'; same_tree tree4 '$DEST' && status_is '.system.pending.phase == \"module-reboot-pending\"'"
expect_exit 0 "reboot: boot-check before the reboot waits" sh_ boot-check
output_has "reboot: ... says so" "waits"
check "reboot: power cycle" sh_ boot-sim
expect_exit 0 "reboot: boot-check after it commits" sh_ boot-check
output_has "reboot: ... committed d4" "committed d4"
check "reboot: DEST holds tree4, no leftovers" bash -c "$(declare -f same_tree listing no_leftovers); D='$D' DEST='$DEST'; same_tree tree4 \"\$DEST\" && no_leftovers"
expect_exit 4 "floor: d1 (counter 1 < 4) is refused now" sh_ install d1.shoal
output_has "floor: ... names the counter" "counter"

# --- a failing Commit: the floor moves only after Commit ---------------------
floor() { sqlite3 "$D/state/shoal.db" "SELECT value FROM floors WHERE name = 'counter:file-cf'"; }
expect_exit 0 "commit: cf1 installs and commits" sh_ install cf1.shoal
check "commit: ... its floor is 1" test "$(floor)" = 1
touch "$D/commit-fails"
expect_exit 5 "commit: cf2 whose Commit fails: rolled back, exit 5" sh_ install cf2.shoal
output_has "commit: ... quotes the module" "the flash refused the commit"
check "commit: ... dest holds cf1's file again" cmp conf1 "$FDEST"
check "commit: ... the floor is still 1" test "$(floor)" = 1
rm -f "$D/commit-fails"
expect_exit 4 "commit: cf2 is refused from then on" sh_ install cf2.shoal
output_has "commit: ... says so" "refused on this device"
check "commit: ... the floor is still 1" test "$(floor)" = 1

done_testing
