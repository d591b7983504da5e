#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Crash safety of the A/B installer on a file-backed device (two 4 MiB slot
# files, the file bootloader and the boot simulator).
#
# The scenario: install v2 -> power on -> boot-check commits v2; install v3
# -> power on -> boot-check rolls v3 back (a health check fails) -> power on.
#
#   - the power-cut sweep: libshoal-powercut.so drops every write not yet
#     synced at a seeded random op K of the scenario (uniform over all its
#     ops, counted once beforehand), across shoal and the hooks it runs;
#   - the kill sweep: SHOAL_INSTALLER_CRASH_AT=<phase> for every named phase.
#
# After each cut or kill: power on (boot simulator), `shoal boot-check`, and
# the device must boot a slot holding a complete image (v1, v2 or v3, by
# whole-image hash) that matches what the state says it holds, the state
# database must pass PRAGMA integrity_check, the counter floor must not be
# below what was committed before, and nothing may be left pending but a
# trial waiting for its boot. Then the interrupted part of the scenario is
# finished (the install re-run, resumed or from scratch) and must end where
# the uncut scenario ends: v2 committed and booted, v3 refused, floor 2.
#
# usage: powercut-sweep.sh SHOAL GEN-IMAGE SHIM [RUNS]
#   RUNS (default 200, or $SHOAL_POWERCUT_RUNS); $SHOAL_POWERCUT_SWEEP_SEED
#   picks another set of cut points (default 1).
set -u
SHOAL=$1
GEN=$2
SHIM=$3
RUNS=${4:-${SHOAL_POWERCUT_RUNS:-200}}
SEED=${SHOAL_POWERCUT_SWEEP_SEED:-1}
. "$(dirname "$0")/../lib/tap.sh"

if built_with_asan "$SHOAL"; then
	skip "power-cut and kill sweeps" "the power-cut shim is preloaded, and ASan must be the first library loaded; the plain build runs them"
	done_testing
	exit
fi
for tool in sqlite3 cmp setsid; do
	if ! command -v $tool >/dev/null; then
		skip "power-cut and kill sweeps" "$tool is missing (scripts/setup-deps installs it)"
		done_testing
		exit
	fi
done

# tmpfs when there is one: the recovery steps run without the shim, and
# their real fsyncs on a disk would make the sweep take minutes
T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
export SHOAL_NO_PROGRESS=1
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
export SHOAL_CONTROL_SOCKET="$T/no-daemon.sock"
unset ${!SHOAL_POWERCUT_@}

# --- releases ---------------------------------------------------------------------
"$SHOAL" keygen -o root >/dev/null 2>&1
"$GEN" --seed 21 --size $((3 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 22 --change 0.3 --insert 10 -o v2.img
"$GEN" --from v2.img --seed 23 --change 0.3 -o v3.img
for v in 2 3; do
	"$SHOAL" release create --image v$v.img --product acme --version $v --counter $v --key root.key -o r$v \
		>/dev/null 2>&1 && "$SHOAL" bundle create r$v -o b$v.shoal >/dev/null 2>&1 ||
		{ echo "Bail out! cannot make release $v"; exit 1; }
done
declare -A SIZE
for v in 1 2 3; do
	SIZE[$v]=$(stat -c %s v$v.img)
done
# SV = the version a slot file holds (its first bytes are that whole
# image); "torn" for none
slot_version() {
	for SV in 1 2 3; do
		cmp -s -n "${SIZE[$SV]}" "$1" "$T/v$SV.img" && return
	done
	SV=torn
}

# --- the device template ---------------------------------------------------------
# Everything the device writes lives under dev/root (tracked by the shim):
# slots, bootloader environment, boot record, state. Hooks and health
# checks live beside it; the post-install hook writes into the root too, so
# a child process of shoal is cut as well.
D=$T/dev
mkdir -p "$D/root/state" "$D/hooks/post-install.d" "$D/health"
truncate -s 4M "$D/root/slot-a" "$D/root/slot-b"
dd if=v1.img of="$D/root/slot-a" conv=notrunc status=none
printf 'shoal_slot=A\n' >"$D/root/env"
cat >"$D/system.conf" <<CONF
[system]
product = acme
bootloader = file
state-dir = $D/root/state
hooks-dir = $D/hooks
health-dir = $D/health
health-timeout = 10s
hook-timeout = 10s
reboot = now
reboot-command = true
trust = $T/root.pub
boot-slot-file = $D/root/booted

[slot.rootfs.0]
device = $D/root/slot-a
bootname = A

[slot.rootfs.1]
device = $D/root/slot-b
bootname = B

[file]
env = $D/root/env
bootlimit = 2
CONF
printf '#!/bin/sh\n[ "$SHOAL_VERSION" != 3 ] || { echo "v3 is unhealthy"; exit 1; }\n' >"$D/health/50-v3-fails"
printf '#!/bin/sh\nset -e\ncd "%s/root"\necho "$SHOAL_VERSION $SHOAL_SLOT" >note.tmp\nsync note.tmp\nmv note.tmp post-install.txt\nsync .\n' "$D" \
	>"$D/hooks/post-install.d/10-note"
chmod +x "$D/health/50-v3-fails" "$D/hooks/post-install.d/10-note"
"$SHOAL" --system-conf "$D/system.conf" boot-sim >/dev/null
cp -a "$D" "$T/dev0"

sh_() { "$SHOAL" --system-conf "$D/system.conf" "$@"; }
fresh_device() { rm -rf "$D" && cp -a "$T/dev0" "$D"; }
# These set variables instead of printing, to spare a fork per call: the
# sweep runs them thousands of times.
# get_booted: BOOTED = the slot the boot simulator booted last, BOOTED_V =
# the version it holds (slot_version)
get_booted() {
	local l
	BOOTED="?"
	while read -r l; do [[ $l == slot=* ]] && BOOTED=${l#slot=}; done <"$D/root/booted"
	slot_version "$([ "$BOOTED" = A ] && echo "$D/root/slot-a" || echo "$D/root/slot-b")"
	BOOTED_V=$SV
}
# get_db: FLOOR = the counter floor, PENDING = the phase of the install in
# progress or "-"
get_db() {
	local q
	FLOOR=0 PENDING=-
	# (sqlite3 would create a missing database)
	[ -e "$D/root/state/shoal.db" ] || return 0
	q=$(sqlite3 "$D/root/state/shoal.db" "SELECT coalesce((SELECT max(value) FROM floors WHERE name = 'counter'), 0);
		SELECT coalesce((SELECT phase FROM install), '-');" 2>&1)
	{ read -r FLOOR; read -r PENDING; } <<<"$q"
}
json_field() { # FIELD FILE: the value of "FIELD": in FILE (strings and numbers)
	local re="\"$1\": \"?([^\",]*)"
	[[ $(<"$2") =~ $re ]] && echo "${BASH_REMATCH[1]}"
}

# The scenario, in two parts: v2 committed (steps 0-2), v3 rolled back (3-6).
STEPS=("install $T/b2.shoal" "boot-sim" "boot-check" "install $T/b3.shoal" "boot-sim" "boot-check" "boot-sim")
NAMES=("install-v2" "power-on" "boot-check-commit" "install-v3" "power-on" "boot-check-rollback" "power-on")

ST=$T/pcstate
# run_step I [ENV...]: step I of the scenario, in a session of its own so
# that the cut can take its whole process group down.
run_step() {
	local i=$1
	shift
	# shellcheck disable=SC2086
	# (the subshell reports the SIGKILL of a cut, into /dev/null)
	(env "$@" setsid -w "$SHOAL" --system-conf "$D/system.conf" ${STEPS[$i]} >"$T/step.out" 2>&1; exit $?) 2>/dev/null
}
shim_env() {
	echo LD_PRELOAD="$SHIM" SHOAL_POWERCUT_ROOT="$D/root" SHOAL_POWERCUT_STATE="$ST" SHOAL_POWERCUT_KILL_GROUP=1 "$@"
}

# the rows of a state database, without their timestamps (seconds since
# the epoch, which differ from run to run)
dump() { sqlite3 "$1" .dump 2>&1 | sed -E 's/\b1[0-9]{9}\b/TIME/g'; }

# --- count the ops of the scenario; snapshots between its steps ------------------------
fresh_device
rm -rf "$ST" && mkdir "$ST"
declare -a FIRST FLOOR_BEFORE DURABLE
total=0
count_ok=1
for i in "${!STEPS[@]}"; do
	FIRST[$i]=$((total + 1))
	get_db
	FLOOR_BEFORE[$i]=$FLOOR
	# shellcheck disable=SC2046
	run_step "$i" $(shim_env SHOAL_POWERCUT_COUNT_ONLY=1 SHOAL_POWERCUT_LOG=1) || [ "$i" = 5 ] || count_ok=0
	total=$((10#$(cat "$ST/count")))
	cp -a "$D" "$T/snap$((i + 1))"
	dump "$T/snap$((i + 1))/root/state/shoal.db" >"$T/snap$((i + 1)).dump"
done
FIRST[${#STEPS[@]}]=$((total + 1))
check "the uncut scenario runs under the shim ($total ops)" test "$count_ok" = 1 -a "$total" -gt 100
get_booted
get_db
check "... and ends with v2 booted from B, floor 2" test "$BOOTED:$BOOTED_V:$FLOOR" = B:2:2
check "... with nothing the shim cannot model" test ! -s "$ST/notes"
cp "$ST/ops.log" "$T/ops.log"
step_of() { # the step holding op K
	local i=0
	while [ "$i" -lt ${#STEPS[@]} ] && [ "$1" -ge "${FIRST[$((i + 1))]}" ]; do i=$((i + 1)); done
	echo "$i"
}

# Is everything durable when step B starts? Cut at its first op (after the
# whole scenario before it ran under the shim) and compare with the snapshot
# the counting run took there: the same files, the same database contents
# (not bytes: an unsynced checkpoint leaves the same rows in the WAL), but
# for the lock file and the boot record (RAM on a real device; every power
# on rewrites it). When equal, a run cut inside step B may start from that
# snapshot with a fresh shim, which keeps the sweep short; when not, runs in
# step B replay the scenario from the last boundary that is.
same_state() { # SNAPSHOT-DIR DEVICE-DIR
	rm -f "$T/dump"
	diff -r --exclude='*-shm' --exclude='*-wal' --exclude=shoal.db --exclude=install.lock --exclude=booted \
		"$1/root" "$2/root" >"$T/diff" 2>&1 &&
		dump "$2/root/state/shoal.db" >"$T/dump" && cmp -s "$1.dump" "$T/dump"
}
DURABLE[0]=1
cp -a "$T/dev0" "$T/snap0"
nondurable=
for b in $(seq 1 $((${#STEPS[@]} - 1))); do
	fresh_device
	rm -rf "$ST" && mkdir "$ST"
	for i in $(seq 0 "$b"); do
		# shellcheck disable=SC2046
		run_step "$i" $(shim_env SHOAL_POWERCUT_AT="${FIRST[$b]}")
		[ -e "$ST/cut" ] && break
	done
	if same_state "$T/snap$b" "$D"; then
		DURABLE[$b]=1
	else
		DURABLE[$b]=0
		nondurable="$nondurable ${NAMES[$((b - 1))]}"
		echo "# a cut right after ${NAMES[$((b - 1))]} loses:"
		{ cat "$T/diff"; [ ! -e "$T/dump" ] || diff "$T/snap$b.dump" "$T/dump"; } | cut -c1-160 | sed 's/^/#   /' | head -6
	fi
done
check "a power cut between steps loses nothing (not durable after:${nondurable:- none})" test -z "$nondurable"

# --- after a cut or a kill ---------------------------------------------------------
# power_on_checks STEP: power on, boot-check, and the invariants. Sets
# BOOTED_V and OUTCOME; diagnostics go to $T/why.
power_on_checks() {
	local i=$1 q st v
	if ! sh_ boot-sim >"$T/sim.out" 2>&1; then
		echo "boot simulator failed: $(<"$T/sim.out")" >>"$T/why"
		return 1
	fi
	get_booted
	[ "$BOOTED_V" != torn ] || echo "booted slot $BOOTED holds no complete image" >>"$T/why"
	sh_ boot-check --json >"$T/bc.out" 2>"$T/bc.err"
	OUTCOME=$(json_field outcome "$T/bc.out")
	case $OUTCOME in
	nothing | reboot-pending | committed | rolled-back | fell-back | abandoned) ;;
	*) echo "boot-check: outcome '$OUTCOME': $(cat "$T/bc.out" "$T/bc.err")" >>"$T/why" ;;
	esac
	# after a rollback the device reboots into the old slot
	if [ "$OUTCOME" = rolled-back ] || [ "$OUTCOME" = fell-back ]; then
		sh_ boot-sim >/dev/null 2>&1
		get_booted
		[ "$BOOTED_V" != torn ] || echo "rebooted slot $BOOTED holds no complete image" >>"$T/why"
	fi
	q=$(sqlite3 "$D/root/state/shoal.db" "PRAGMA integrity_check;
		SELECT coalesce((SELECT max(value) FROM floors WHERE name = 'counter'), 0);
		SELECT coalesce((SELECT phase FROM install), '-');
		SELECT coalesce((SELECT version FROM slots WHERE slot = $([ "$BOOTED" = A ] && echo 0 || echo 1)
			AND state IN ('good', 'trial')), '-');" 2>&1)
	if [ "$(printf '%s\n' "$q" | wc -l)" != 4 ] || [ "${q%%$'\n'*}" != ok ]; then
		echo "integrity_check: $q" >>"$T/why"
		return 1
	fi
	{ read -r _; read -r FLOOR; read -r st; read -r v; } <<<"$q"
	POWERON_V=$BOOTED_V
	[ "$FLOOR" -ge "${FLOOR_BEFORE[$i]}" ] || echo "counter floor $FLOOR below ${FLOOR_BEFORE[$i]}" >>"$T/why"
	[ "$v" = - ] || [ "$v" = "$BOOTED_V" ] || echo "state says slot $BOOTED holds $v, it holds $BOOTED_V" >>"$T/why"
	[ "$st" = - ] || [ "$st" = reboot-pending ] || echo "install left in phase $st after boot-check" >>"$T/why"
	[ ! -s "$T/why" ]
}

# finish PART: drive the interrupted part of the scenario to its end (part
# 1: v2 committed; part 2: v3 rolled back and refused), then check that it
# ends where the uncut scenario does. Sets RESUMED when a re-run install
# found bytes already in the slot.
finish() {
	local part=$1 rc
	RESUMED=
	for _ in 1 2 3 4; do
		get_db
		if [ "$PENDING" != - ]; then
			sh_ boot-sim >/dev/null 2>&1
			sh_ boot-check >"$T/fin.out" 2>&1
			grep -q "rolled back\|fell back" "$T/fin.out" && sh_ boot-sim >/dev/null 2>&1
			continue
		fi
		[ "$part" = 1 ] && [ "$FLOOR" -ge 2 ] && break
		sh_ install "$T/b$((part + 1)).shoal" --json >"$T/fin.out" 2>&1
		rc=$?
		if [ "$part" = 2 ] && [ "$rc" = 4 ] && grep -q "is refused on this device" "$T/fin.out"; then
			break
		elif [ "$rc" != 0 ]; then
			echo "re-run install v$((part + 1)) failed: $(<"$T/fin.out")" >>"$T/why"
			return 1
		fi
		[ "$(json_field bytes_in_slot "$T/fin.out")" = 0 ] || RESUMED=1
	done
	get_booted
	get_db
	[ "$BOOTED_V" = 2 ] || echo "part $part ends booted into $BOOTED holding $BOOTED_V" >>"$T/why"
	[ "$FLOOR" = 2 ] || echo "part $part ends with counter floor $FLOOR" >>"$T/why"
	[ "$PENDING" = - ] || echo "part $part ends with an install pending ($PENDING)" >>"$T/why"
	if [ "$part" = 2 ] && [ "$(sqlite3 "$D/root/state/shoal.db" "SELECT count(*) > 0 FROM refused WHERE counter = 3")" != 1 ]; then
		echo "v3 is not refused at the end" >>"$T/why"
	fi
	[ ! -s "$T/why" ]
}
part_of() { [ "$1" -lt 3 ] && echo 1 || echo 2; }

declare -A TALLY
tally() { TALLY[$1]=$((${TALLY[$1]:-0} + 1)); }
report() { # OK? DESC: one TAP line; on failure the reasons and a copy of the device
	if [ -s "$T/why" ]; then
		cp "$T/why" "$TAP_LOG"
		_tap_report fail "$1"
	else
		_tap_report ok "$1"
	fi
}

# --- the kill sweep ------------------------------------------------------------------
PHASES="verify pre-install write verify-slot post-install mark-trial reboot-pending health commit rollback"
for phase in $PHASES; do
	fresh_device
	: >"$T/why"
	crashed=
	for i in "${!STEPS[@]}"; do
		run_step "$i" SHOAL_INSTALLER_CRASH_AT="$phase"
		[ $? = 137 ] && { crashed=$i; break; }
	done
	POWERON_V="?" OUTCOME="?" RESUMED=
	if [ -z "$crashed" ]; then
		echo "no step of the scenario crashed in phase $phase" >"$T/why"
	elif power_on_checks "$crashed"; then
		finish "$(part_of "$crashed")"
	fi
	report "kill in phase $phase (${NAMES[${crashed:-0}]}): boots v$POWERON_V, boot-check: $OUTCOME${RESUMED:+, re-run install resumed}"
done

echo "# setup, counting, boundaries and kill sweep: ${SECONDS}s"
t0=$SECONDS
# --- the power-cut sweep ---------------------------------------------------------------
RANDOM=$SEED
for _ in $(seq 1 "$RUNS"); do
	k=$(((RANDOM * 32768 + RANDOM) % total + 1))
	s=$(step_of "$k")
	j=$s
	while [ "${DURABLE[$j]}" != 1 ]; do j=$((j - 1)); done
	rm -rf "$D" "$ST" && cp -a "$T/snap$j" "$D" && mkdir "$ST"
	cutstep=
	for i in $(seq "$j" "$s"); do
		# shellcheck disable=SC2046
		run_step "$i" $(shim_env SHOAL_POWERCUT_AT=$((k - FIRST[j] + 1)))
		[ -e "$ST/cut" ] && { cutstep=$i; break; }
	done
	: >"$T/why"
	what=$(sed -n "s/^$k [0-9]* [^ ]* \([^ ]*\) .*\/\([^/]*\)$/\1 \2/p" "$T/ops.log")
	if [ "$cutstep" != "$s" ]; then
		# a step may not make exactly the ops of the counting run
		tally "cut points not reached"
		skip "cut at op $k/$total ($what) in ${NAMES[$s]}" "not reached: the step made fewer ops this time"
		continue
	fi
	grep -E "LOST|FATAL" "$ST/notes" >>"$T/why" 2>/dev/null
	get_db
	phase_at_cut=${PENDING#-}
	POWERON_V="?" OUTCOME="?" RESUMED=
	power_on_checks "$s" && finish "$(part_of "$s")"
	tally "cut in ${NAMES[$s]}, boots v$POWERON_V, boot-check: $OUTCOME${RESUMED:+, re-run install resumed}"
	report "cut at op $k/$total ($what) in ${NAMES[$s]}${phase_at_cut:+, phase $phase_at_cut}: boots v$POWERON_V, boot-check: $OUTCOME${RESUMED:+, re-run install resumed}"
done

echo "# $RUNS power cuts (seed $SEED) in $((SECONDS - t0))s over $total ops; steps start at ops ${FIRST[*]}:"
for key in "${!TALLY[@]}"; do
	printf '#   %4d  %s\n' "${TALLY[$key]}" "$key"
done | sort -k3
done_testing
