# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared pieces of the fleet tests: a scratch directory cleaned up with
# every daemon started, keys and fleet secrets, configurations, bounded
# waits on events. Expects $SHOAL and $SHOALD; sourced after tap.sh.

fleet_setup() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/shoal-fleet.XXXXXX")
	PIDS=()
	trap fleet_cleanup EXIT
	cd "$T" || exit 1
	export SHOAL_NO_PROGRESS=1
	"$SHOAL" keygen -o root >/dev/null
	"$SHOAL" keygen -o rel >/dev/null
	"$SHOAL" keyring create --root root.key --add rel.pub --version 1 -o kr >/dev/null
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >fleet.key
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >other-fleet.key
	chmod 600 fleet.key other-fleet.key
}

fleet_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# SHOAL_TEST_KEEP=1 keeps the logs and state for a look afterwards
	if [ -n "${SHOAL_TEST_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}

free_ports() { # N: prints N free TCP ports on 127.0.0.1
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_for SECONDS CMD...: runs CMD every 0.2 s until it succeeds; bounded.
wait_for() {
	local until=$((SECONDS + $1)); shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$until" ] || return 1
		sleep 0.2
	done
}

status() { # NAME [--json]
	SHOAL_CONTROL_SOCKET="$T/$1.sock" "$SHOAL" status --json
}
is_complete() { status "$1" | grep -q '"state": "complete"'; }

# conf NAME ROLE PORT FLEETKEY EXTRA...: writes NAME.conf. FLEET_LISTEN
# (default 127.0.0.1), FLEET_LOG (debug) and FLEET_MDNS (no) change those keys.
conf() {
	local name=$1 role=$2 port=$3 key=$4; shift 4
	{
		printf '[daemon]\nrole = %s\nname = %s\nstate_dir = %s/%s\nlisten_address = %s\n' "$role" "$name" "$T" "$name" \
			"${FLEET_LISTEN:-127.0.0.1}"
		printf 'listen_port = %s\ncontrol_socket = %s/%s.sock\nlog_level = %s\n' "$port" "$T" "$name" "${FLEET_LOG:-debug}"
		printf '[fleet]\nproduct = demo\nsecret_file = %s/%s\ntrust = %s/root.pub\n' "$T" "$key" "$T"
		printf '[discovery]\nmdns = %s\n' "${FLEET_MDNS:-no}"
		for line in "$@"; do printf '%s\n' "$line"; done
	} >"$name.conf"
}
start() { # NAME [ENV=VALUE...]
	local name=$1; shift
	env "$@" "$SHOALD" -c "$name.conf" 2>"$name.log" &
	PIDS+=($!)
	wait_for 10 test -S "$T/$name.sock"
}

# start_in HOST NAME: starts shoald with NAME.conf in a host of the
# namespace LAN (tests/lib/netns.sh) and waits for its control socket, or
# its end; its pid goes to PID_OF[NAME].
declare -A PID_OF
start_in() {
	local n=50 st
	host_spawn "$1" "$T/$2.log" "$SHOALD" -c "$T/$2.conf" || return 1
	PID_OF[$2]=$NETNS_PID
	while [ $((n -= 1)) -gt 0 ]; do
		test -S "$T/$2.sock" && return 0
		read -r _ _ st _ 2>/dev/null <"/proc/$NETNS_PID/stat" || return 1
		[ "$st" != Z ] || return 1
		sleep 0.2
	done
	return 1
}

# stop_in NAME...: SIGTERM to each shoald start_in started, then waits for
# them all; true when every one exited 0 (no leak report under ASan); says
# which did not, with the end of its log.
stop_in() {
	local name rc=0
	for name in "$@"; do kill -TERM "${PID_OF[$name]}"; done
	for name in "$@"; do
		wait "${PID_OF[$name]}" && continue
		echo "$name exited with $?:"
		tail -5 "$T/$name.log" | sed 's/^/  /'
		rc=1
	done
	return $rc
}
