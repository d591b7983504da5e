#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# shoald runs the installer's hooks off its event loop: while a pre-install
# or post-install hook runs (here: hooks that block until the test lets
# them go, through a FIFO), shoald answers `shoal status` and names the
# phase, and serves its peers: a second device fetches the release from it
# meanwhile. Let go, the install goes on to reboot-pending.
# SIGTERM while a hook blocks: shoald stops the hook and exits at once;
# the install stays in its phase, and the next start abandons it as cut
# short (as after a power cut) and installs the release again.
#
# usage: device-hooks-async.sh SHOAL SHOALD GEN-IMAGE
set -u
SHOAL=$1
SHOALD=$2
GEN=$3
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/fleet.sh"
. "$(dirname "$0")/../lib/ab-device.sh"
fleet_setup
unset SHOAL_SYSTEM_CONF SHOAL_INSTALLER_CRASH_AT
# the hooks' process groups too (pids from their .held files), whatever
# shoald did with them; then the daemons
cleanup() {
	for f in "$T"/dev*/*.held; do [ -s "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null; done
	fleet_cleanup
}
trap cleanup EXIT

"$GEN" --seed 51 --size $((6 << 20)) --kind mixed -o v1.img
"$GEN" --from v1.img --seed 52 --change 1 --insert 4 -o v2.img
"$SHOAL" release create --image v2.img --product demo --version 2 --counter 2 --key rel.key --keyring kr -o rel2 >/dev/null
"$SHOAL" bundle create rel2 -o b2.shoal >/dev/null
read -r GP P1 P2 P3 NOONE <<<"$(free_ports 5)"

# hook N PHASE: device N's PHASE hook tells it runs (PHASE.held: its pid,
# which leads its process group) and blocks until the test writes a line
# into PHASE.fifo (bounded: far beyond every wait of this test, far below
# the hook-timeout); with PHASE.pass present it passes at once
hook() {
	local d="$T/dev$1"
	mkdir -p "$d/hooks/$2.d"
	mkfifo "$d/$2.fifo"
	cat >"$d/hooks/$2.d/10-hold" <<HOOK
#!/bin/sh
[ -e "$d/$2.pass" ] && exit 0
echo \$\$ >"$d/$2.held.tmp" && mv "$d/$2.held.tmp" "$d/$2.held"
exec timeout 300 sh -c 'read go <"\$0"' "$d/$2.fifo"
HOOK
	chmod +x "$d/hooks/$2.d/10-hold"
}
held() { [ -s "$T/dev$1/$2.held" ]; }
let_go() { timeout 10 sh -c 'echo go >"$0"' "$T/dev$1/$2.fifo"; }
# the hook process (its pid from the .held file) is gone, reaped or not
hook_gone() { gone "$(cat "$T/dev$1/$2.held")"; }
gone() { local st; read -r _ _ st _ 2>/dev/null <"/proc/$1/stat" || return 0; [ "$st" = Z ]; }
# a status that must come (bounded: a daemon whose loop waits answers none)
# (jq 1.6 -e takes no input for true: the answer is checked first)
tstatus() {
	local out
	out=$(timeout 10 env SHOAL_CONTROL_SOCKET="$T/dev$1.sock" "$SHOAL" status --json) && [ -n "$out" ] &&
		printf '%s\n' "$out" | jq -e "$2" >/dev/null
}
# devconf N INSTALL PEER-LINE...
devconf() {
	local n=$1 inst=$2; shift 2
	conf "dev$n" device "${PORTS[$n]}" fleet.key "$@" '[device]' "system_conf = $T/dev$n/system.conf" \
		"install = $inst" "reboot = none"
	# hooks may take long: the daemon must not wait on them
	sed -i 's/^health-timeout = .*/&\nhook-timeout = 600s/' "$T/dev$n/system.conf"
}
PORTS=([1]=$P1 [2]=$P2 [3]=$P3)

conf gw gateway "$GP" fleet.key '[gateway]' "store_dir = $T/store" "import = $T/rel2"
start gw

# dev1: install = auto; its pre-install and post-install hooks block
mkdev 1
hook 1 pre-install
hook 1 post-install
devconf 1 auto "gateway = 127.0.0.1:$GP"
startdev 1
check "dev1: fetches v2 and its pre-install hook runs" wait_for 60 held 1 pre-install
check "dev1: status answers while the pre-install hook runs, and names the phase" \
	tstatus 1 '.device.state == "installing" and .device.phase == "pre-install" and .device.progress.phase == "pre-install"'

# dev2 knows only dev1: it fetches v2 from dev1 while dev1's hook blocks
mkdev 2
hook 2 pre-install
devconf 2 manual "static_peer = 127.0.0.1:$P1"
startdev 2
check "dev2: fetches v2 from dev1, whose pre-install hook still blocks" \
	wait_for 60 grep -q "install = manual: waiting for 'shoal install --fetched'" dev2.log
check "dev1: its hook still blocks, the install still in pre-install" \
	tstatus 1 '.device.state == "installing" and .device.phase == "pre-install"'

check "dev1: the pre-install hook is let go" let_go 1 pre-install
check "dev1: its post-install hook runs" wait_for 60 held 1 post-install
check "dev1: status answers while the post-install hook runs, and names the phase" \
	tstatus 1 '.device.state == "installing" and .device.phase == "post-install" and .device.progress.phase == "post-install"'
check "dev1: connected to its peers meanwhile" tstatus 1 '.peer_count >= 1'
check "dev1: the post-install hook is let go" let_go 1 post-install
check "dev1: installed, reboot pending" wait_for 60 tstatus 1 '.device.state == "reboot-pending" and .device.last.result == "installed"'
check "dev1: the slot was hashed, the trial set" \
	sh -c 'grep -q "verify-slot: .* bytes of slot B hashed" dev1.log && grep -q "2 (counter 2) installed in slot B" dev1.log'

# dev2: SIGTERM while its pre-install hook blocks
expect_exit 0 "dev2: shoal install --fetched" timeout 10 "$SHOAL" install --fetched --socket "$T/dev2.sock"
check "dev2: its pre-install hook runs" wait_for 30 held 2 pre-install
check "dev2: status names the phase" tstatus 2 '.device.state == "installing" and .device.progress.phase == "pre-install"'
kill -TERM "${DPID[2]}"
check "dev2: shoald exits on SIGTERM while the hook blocks" wait_for 15 gone "${DPID[2]}"
gone "${DPID[2]}" || kill -KILL "${DPID[2]}" # (not to wait on it below)
rc=0
wait "${DPID[2]}" || rc=$?
check "dev2: ... cleanly (exit 0)" test "$rc" = 0
check "dev2: the hook was stopped with it" wait_for 10 hook_gone 2 pre-install
check "dev2: the install was left in its phase" grep -q "install of 2 interrupted in phase pre-install by the shutdown" dev2.log
check "dev2: nothing was abandoned before the stop" sh -c '! grep -q "install abandoned" dev2.log'
cp dev2.log dev2-stopped.log
touch "$T/dev2/pre-install.pass"
startdev 2
check "dev2: the boot check abandons the install cut short" \
	grep -q "install of 2 interrupted in phase pre-install, before the bootloader was switched: abandoned" dev2.log
check "dev2: status answers after the restart" tstatus 2 '.device.boot_check.outcome == "abandoned"'
check "dev2: v2 waits for its install again" \
	wait_for 60 grep -q "install = manual: waiting for 'shoal install --fetched'" dev2.log
expect_exit 0 "dev2: shoal install --fetched, again" timeout 10 "$SHOAL" install --fetched --socket "$T/dev2.sock"
check "dev2: installed, reboot pending" wait_for 60 tstatus 2 '.device.state == "reboot-pending" and .device.last.result == "installed"'

# dev3: `shoal install BUNDLE` through shoald, both hooks blocking
mkdev 3
hook 3 pre-install
hook 3 post-install
devconf 3 manual "static_peer = 127.0.0.1:$NOONE" # (a port nobody listens on: no fetch)
startdev 3
check "dev3: started" tstatus 3 '.device.state == "idle"'
"$SHOAL" --system-conf "$T/dev3/system.conf" install --socket "$T/dev3.sock" "$T/b2.shoal" >install3.out 2>&1 &
CLI=$!
PIDS+=("$CLI")
check "dev3: shoal install b2.shoal: its pre-install hook runs" wait_for 30 held 3 pre-install
check "dev3: status answers and names the phase and the bundle" \
	tstatus 3 ".device.state == \"installing\" and .device.progress.phase == \"pre-install\" and .device.progress.source == \"$T/b2.shoal\""
check "dev3: the pre-install hook is let go" let_go 3 pre-install
check "dev3: its post-install hook runs" wait_for 60 held 3 post-install
check "dev3: status answers and names the phase" \
	tstatus 3 '.device.state == "installing" and .device.progress.phase == "post-install" and .device.phase == "post-install"'
check "dev3: the post-install hook is let go" let_go 3 post-install
check "dev3: shoal install ends" wait_for 60 gone "$CLI"
rc=0
wait "$CLI" || rc=$?
check "dev3: ... and says it installed" sh -c "test $rc = 0 && grep -q 'installed 2 (counter 2) into slot B through shoald' install3.out"
check "dev3: reboot pending" tstatus 3 '.device.state == "reboot-pending" and .device.last.result == "installed"'
done_testing
