# SPDX-License-Identifier: LGPL-2.1-or-later
# A LAN of hosts inside network namespaces, with real multicast, so that
# tests can run several shoald, dbus-daemon and avahi-daemon instances on one
# machine and let them find each other by mDNS. Needs root, util-linux
# (unshare, nsenter), iproute2, dbus-daemon and avahi-daemon.
#
#   lan namespace:   br0 ── vh1 ── vh2 ── ... ── vhN        (no link out)
#                            │      │              │
#   host namespaces:       eth0   eth0           eth0   10.X.0.I/24, lo
#                          private /run (tmpfs): own dbus-daemon, avahi-daemon
#
# How, and why this way:
# - Every namespace is held by a plain process made with `unshare` (no `ip
#   netns add`). Nothing is named or bind-mounted under /run/netns, so there
#   is nothing to forget: when the last process inside a namespace ends, the
#   kernel removes it, and with it its veths, the bridge, the addresses and
#   the mounts. The holders (`tail --pid=$$ -f /dev/null`) also end by
#   themselves within a second of the test's shell, even if it is killed.
# - The bridge lives in a namespace of its own that has no link to the
#   machine's namespace: no veth out, no route, no NAT. Nothing a host sends
#   can leave the simulated LAN, whatever the addresses.
# - Each host has its own net, mount and UTS namespaces. Its mount namespace
#   (private propagation, unshare's default) gets a tmpfs on /run, so its
#   dbus-daemon and avahi-daemon use the default paths (/run/dbus,
#   /run/avahi-daemon) without meeting the others', and a client started
#   in that host (shoald) finds its bus where libdbus looks by default.
#   Everything else in the file system is shared: logs, state and control
#   sockets can live in the test's directory.
# - Commands enter a host with `nsenter -t HOLDER -n -m -u`, which execs the
#   command (no fork: no pid namespace is entered), so `$!` is the daemon's
#   own pid and every process is ended by that pid. Before entering, the
#   holder is checked to be in namespaces other than ours: a mistake can
#   never start a daemon on the machine's own network.
# - Daemons run in the foreground as children of the test's shell (no
#   --fork, no -D): they stay in its process group, so meson's kill of a
#   test that times out reaches them too, and their logs go to files.
#
# Functions:
#   netns_usable                  returns 1 (and says why) when this cannot run here
#   netns_tap_skip_unless_usable [QDISC...]   a TAP test's skip (and exit) when it cannot
#   lan_up NAME N [X]             N hosts on 10.X.0.0/24 (X default 77), dbus + avahi each
#                                 (none with NETNS_DAEMONS=0: a LAN without mDNS)
#   lan_down                      ends everything by pid; idempotent (trap it)
#   host_exec I CMD...            runs CMD in host I and waits for it
#   host_spawn I LOG CMD...       starts CMD in host I in the background; pid in NETNS_PID
#   host_ip I                     prints host I's address
#   host_avahi_stop I / host_avahi_start I   kill (by pid) / start host I's avahi-daemon
#   host_shape I UP DOWN          tbf rates (tc units: 10mbit, 512kbit) on host I's link
#   host_unshape I
#   host_link I up|down           host I's cable: its veth's bridge end up or down
#                                 (host I's eth0 loses its carrier, as when unplugged)
#   host_tx_bytes I               bytes host I's eth0 has sent (frames, headers included)
#   netns_have_qdisc KIND         whether the kernel has that qdisc (tbf, htb, netem, ...)

# ip, tc and the daemons live in sbin, which a test's PATH may lack
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) PATH=$PATH:/usr/sbin:/sbin ;;
esac

NETNS_DIR=
NETNS_NAME=
NETNS_X=77
NETNS_N=0
NETNS_BR=              # holder of the lan namespace
NETNS_HOLDER=()        # [I] holder of host I
NETNS_DBUS=()          # [I] pid of host I's dbus-daemon
NETNS_AVAHI=()         # [I] pid of host I's avahi-daemon
NETNS_AVAHI_STARTS=()  # [I] how many times it was started (log file suffix)
NETNS_SPAWNED=()       # every pid started in a host, in order
NETNS_PID=             # the last one
NETNS_INODES=()        # the namespaces made (inode numbers), for lan_leftovers
NETNS_EVER=()          # every pid started (holders too), kept after lan_down, for lan_pids
NETNS_TIMEOUT=${NETNS_TIMEOUT:-20}
# in the environment of every process this script starts: a namespace's
# inode number is reused as soon as it is freed (by another test running at
# the same time, say), so lan_leftovers wants the inode and this mark too
NETNS_MARK="SHOAL_NETNS_MARK=$$.$RANDOM$RANDOM"

_netns_log() { echo "# netns: $*" >&2; }

# _netns_wait SECONDS CMD...: runs CMD every 0.05 s until it succeeds; bounded.
_netns_wait() {
	local tries=$(($1 * 20)); shift
	while ! "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.05
	done
}

netns_usable() {
	local t
	if [ "$(id -u)" != 0 ]; then
		echo "needs root (network namespaces)"
		return 1
	fi
	for t in unshare nsenter ip tail dbus-daemon avahi-daemon; do
		command -v "$t" >/dev/null 2>&1 || { echo "$t is not installed"; return 1; }
	done
	if ! unshare --net --mount --uts true 2>/dev/null; then
		echo "unshare --net --mount --uts does not work here"
		return 1
	fi
	return 0
}

netns_tap_skip_unless_usable() { # QDISC...: those the test needs too
	local why q
	why=$(netns_usable)
	for q in "$@"; do
		[ -n "$why" ] || netns_have_qdisc "$q" || why="this kernel has no $q qdisc"
	done
	[ -n "$why" ] || return 0
	echo "1..0 # SKIP $why"
	rm -f "$TAP_LOG"
	exit 0
}

# _netns_isolated PID NS...: PID is alive and in other namespaces than ours.
# Builtins only (test -ef compares the namespace inodes): it runs before
# every command that enters a host.
_netns_isolated() {
	local pid=$1 ns comm=; shift
	[ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
	read -r comm 2>/dev/null <"/proc/$pid/comm"
	[ "$comm" = tail ] || return 1 # unshare has exec'ed the holder
	for ns in "$@"; do
		[ -e "/proc/$pid/ns/$ns" ] && [ -e "/proc/$$/ns/$ns" ] || return 1
		! [ "/proc/$pid/ns/$ns" -ef "/proc/$$/ns/$ns" ] || return 1
	done
}

# _netns_holder VAR NS-OPTIONS...: starts a holder, waits until it is
# isolated and stores its pid in VAR.
_netns_holder() {
	local var=$1 pid o nslist=(); shift
	for o in "$@"; do
		case $o in
		--net) nslist+=(net) ;;
		--mount) nslist+=(mnt) ;;
		--uts) nslist+=(uts) ;;
		esac
	done
	unshare "$@" -- env "$NETNS_MARK" tail --pid=$$ -f /dev/null </dev/null >/dev/null 2>&1 &
	pid=$!
	if ! _netns_wait "$NETNS_TIMEOUT" _netns_isolated "$pid" "${nslist[@]}"; then
		_netns_log "holder $pid never reached its own namespaces (${nslist[*]})"
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 1
	fi
	printf -v "$var" '%s' "$pid"
	NETNS_EVER+=("$pid")
	for o in "${nslist[@]}"; do
		NETNS_INODES+=("$(stat -L -c %i "/proc/$pid/ns/$o")")
	done
}

_netns_enter_br() { # CMD...: in the lan namespace (network only)
	_netns_isolated "$NETNS_BR" net || { _netns_log "lan namespace holder is gone"; return 1; }
	nsenter -t "$NETNS_BR" -n -- env "$NETNS_MARK" "$@"
}

_netns_host_ok() {
	local i=$1
	[[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$NETNS_N" ] || { _netns_log "no host $i"; return 1; }
	_netns_isolated "${NETNS_HOLDER[$i]}" net mnt uts || { _netns_log "host $i: holder is gone"; return 1; }
}

host_exec() {
	local i=$1; shift
	_netns_host_ok "$i" || return 1
	nsenter -t "${NETNS_HOLDER[$i]}" -n -m -u -- env "$NETNS_MARK" "$@"
}

host_spawn() {
	local i=$1 log=$2; shift 2
	_netns_host_ok "$i" || return 1
	nsenter -t "${NETNS_HOLDER[$i]}" -n -m -u -- env "$NETNS_MARK" "$@" </dev/null >"$log" 2>&1 &
	NETNS_PID=$!
	NETNS_SPAWNED+=("$NETNS_PID")
	NETNS_EVER+=("$NETNS_PID")
}

host_ip() { echo "10.$NETNS_X.0.$1"; }

# _netns_running PID: alive and not a zombie waiting to be reaped
_netns_running() {
	local stat=
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) } # the state follows "(comm) ", and comm may hold anything
	[ "${stat%% *}" != Z ]
}

# Ends one pid we started: SIGTERM, up to 5 s, then SIGKILL; reaps it.
_netns_end() {
	local pid=$1 tries=100
	_netns_running "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	while _netns_running "$pid"; do
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then
			_netns_log "pid $pid ignored SIGTERM for 5 s; killing it"
			kill -KILL "$pid" 2>/dev/null
			break
		fi
		sleep 0.05
	done
	wait "$pid" 2>/dev/null
	return 0
}

_netns_avahi_conf() { # I
	cat <<EOF
[server]
host-name=$NETNS_NAME-h$1
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-hinfo=no
publish-workstation=no
publish-addresses=yes

[reflector]
enable-reflector=no
EOF
}

host_avahi_start() {
	local i=$1 n log
	n=$((${NETNS_AVAHI_STARTS[$i]:-0} + 1))
	NETNS_AVAHI_STARTS[$i]=$n
	log="$NETNS_DIR/h$i/avahi.$n.log"
	host_spawn "$i" "$log" avahi-daemon -f "$NETNS_DIR/h$i/avahi-daemon.conf" \
		--no-drop-root --no-chroot --no-rlimits --no-proc-title || return 1
	NETNS_AVAHI[$i]=$NETNS_PID
}

_netns_avahi_ready() { # I: the last avahi-daemon started there says it is up
	grep -q "Server startup complete" "$NETNS_DIR/h$1/avahi.${NETNS_AVAHI_STARTS[$1]}.log"
}

host_avahi_wait() {
	_netns_wait "$NETNS_TIMEOUT" _netns_avahi_ready "$1" && return 0
	_netns_log "host $1: avahi-daemon did not start:"
	sed 's/^/#   /' "$NETNS_DIR/h$1/avahi.${NETNS_AVAHI_STARTS[$1]}.log" >&2
	return 1
}

host_avahi_stop() {
	local i=$1
	[ -n "${NETNS_AVAHI[$i]:-}" ] || return 0
	_netns_end "${NETNS_AVAHI[$i]}"
	NETNS_AVAHI[$i]=
}

_netns_dbus_ready() { host_exec "$1" test -S /run/dbus/system_bus_socket; }

lan_up() {
	local name=$1 n=$2 i
	NETNS_X=${3:-77}
	if [ -n "$NETNS_DIR" ]; then
		_netns_log "lan_up: a LAN is already up"
		return 1
	fi
	if ! [[ "$name" =~ ^[a-z][a-z0-9-]{0,15}$ ]] || ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 250 ] ||
		! [[ "$NETNS_X" =~ ^[0-9]+$ ]] || [ "$NETNS_X" -gt 255 ]; then
		_netns_log "usage: lan_up NAME(a-z0-9-) N(1..250) [X]"
		return 1
	fi
	NETNS_NAME=$name
	NETNS_INODES=() NETNS_EVER=()
	NETNS_DIR=$(mktemp -d "/tmp/shoal-netns-$name.XXXXXX") || return 1

	_netns_holder NETNS_BR --net || return 1
	_netns_enter_br ip link set lo up &&
		_netns_enter_br ip link add br0 type bridge mcast_snooping 0 &&
		_netns_enter_br ip link set br0 up || return 1

	for ((i = 1; i <= n; i++)); do
		mkdir -p "$NETNS_DIR/h$i"
		# (private is unshare's default: said here because /run depends on it)
		_netns_holder "NETNS_HOLDER[$i]" --net --mount --propagation private --uts || return 1
		NETNS_N=$i
		# the veth is made inside the lan namespace and its far end moved
		# straight into the host's: it never exists in ours
		_netns_enter_br ip link add "vh$i" type veth peer name eth0 netns "${NETNS_HOLDER[$i]}" &&
			_netns_enter_br ip link set "vh$i" master br0 up || return 1
		host_exec "$i" sh -ec "
			mount -t tmpfs -o mode=0755,size=16m shoal-run /run
			mkdir -p /run/dbus /run/avahi-daemon
			hostname '$name-h$i'
			ip link set lo up
			ip addr add $(host_ip "$i")/24 dev eth0
			ip link set eth0 up" || return 1
		_netns_avahi_conf "$i" >"$NETNS_DIR/h$i/avahi-daemon.conf"
	done

	[ "${NETNS_DAEMONS:-1}" != 0 ] || return 0
	# start the daemons of all hosts, then wait for them: in parallel
	for ((i = 1; i <= n; i++)); do
		host_spawn "$i" "$NETNS_DIR/h$i/dbus.log" dbus-daemon --system --nofork --nopidfile --nosyslog || return 1
		NETNS_DBUS[$i]=$NETNS_PID
	done
	for ((i = 1; i <= n; i++)); do
		if ! _netns_wait "$NETNS_TIMEOUT" _netns_dbus_ready "$i"; then
			_netns_log "host $i: dbus-daemon did not start:"
			sed 's/^/#   /' "$NETNS_DIR/h$i/dbus.log" >&2
			return 1
		fi
	done
	for ((i = 1; i <= n; i++)); do host_avahi_start "$i" || return 1; done
	for ((i = 1; i <= n; i++)); do host_avahi_wait "$i" || return 1; done
	return 0
}

lan_down() {
	local k
	# newest first: clients before their daemons, daemons before holders
	for ((k = ${#NETNS_SPAWNED[@]} - 1; k >= 0; k--)); do
		_netns_end "${NETNS_SPAWNED[$k]}"
	done
	NETNS_SPAWNED=()
	for ((k = NETNS_N; k >= 1; k--)); do
		[ -n "${NETNS_HOLDER[$k]:-}" ] && _netns_end "${NETNS_HOLDER[$k]}"
	done
	[ -n "$NETNS_BR" ] && _netns_end "$NETNS_BR"
	NETNS_HOLDER=() NETNS_DBUS=() NETNS_AVAHI=() NETNS_AVAHI_STARTS=()
	NETNS_BR= NETNS_N=0
	# SHOAL_TEST_KEEP=1 keeps the daemons' logs for a look afterwards
	if [ -n "$NETNS_DIR" ]; then
		if [ -n "${SHOAL_TEST_KEEP:-}" ]; then echo "# kept $NETNS_DIR"; else rm -rf "$NETNS_DIR"; fi
	fi
	NETNS_DIR=
	return 0
}

# lan_leftovers: pids of any process still in a namespace lan_up made
# (empty once lan_down has run: the kernel then has removed them all).
lan_leftovers() {
	local p ino want
	[ "${#NETNS_INODES[@]}" -gt 0 ] || return 0
	for p in /proc/[0-9]*; do
		for ino in $(stat -L -c %i "$p/ns/net" "$p/ns/mnt" "$p/ns/uts" 2>/dev/null); do
			for want in "${NETNS_INODES[@]}"; do
				[ "$ino" = "$want" ] && tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "$NETNS_MARK" &&
					echo "${p#/proc/}"
			done
		done
	done | sort -u
	return 0
}

# lan_pids: every pid lan_up and host_spawn started that still runs (none
# after lan_down); for a test that checks it left nothing behind.
lan_pids() {
	local p
	for p in "${NETNS_EVER[@]}"; do
		_netns_running "$p" && echo "$p"
	done
	return 0
}

# --- traffic shaping (for benchmarks) ---------------------------------------
# This kernel may lack netem, fq_codel and friends; tbf and htb are the ones
# to rely on. Ask first.
netns_have_qdisc() { # KIND
	unshare --net sh -c "ip link set lo up && tc qdisc replace dev lo root $1 $(_netns_qdisc_args "$1")" >/dev/null 2>&1
}

_netns_qdisc_args() {
	case $1 in
	tbf) echo "rate 1mbit burst 16kb latency 50ms" ;;
	netem) echo "delay 1ms" ;;
	*) echo "" ;;
	esac
}

# _netns_burst RATE: bytes a tbf at RATE must let through at once (at least
# 10 ms worth, and never less than a few full frames).
_netns_burst() {
	local r=$1 num unit bits
	num=${r%%[a-zA-Z]*}
	unit=${r#"$num"}
	case $unit in
	bit) bits=$num ;;
	kbit) bits=$((num * 1000)) ;;
	mbit) bits=$((num * 1000000)) ;;
	gbit) bits=$((num * 1000000000)) ;;
	*) return 1 ;;
	esac
	[ $((bits / 800)) -gt 16384 ] && echo $((bits / 800)) || echo 16384
}

# host_shape I UP DOWN: host I sends at most UP and receives at most DOWN
# (tc rates such as 20mbit; "-" leaves that direction alone). Upload is
# shaped on the host's eth0, download on its port of the bridge.
host_shape() {
	local i=$1 up=$2 down=$3 b
	_netns_host_ok "$i" || return 1
	if [ "$up" != - ]; then
		b=$(_netns_burst "$up") || { _netns_log "bad rate '$up' (use bit, kbit, mbit, gbit)"; return 1; }
		host_exec "$i" tc qdisc replace dev eth0 root tbf rate "$up" burst "$b" latency 100ms || return 1
	fi
	if [ "$down" != - ]; then
		b=$(_netns_burst "$down") || { _netns_log "bad rate '$down' (use bit, kbit, mbit, gbit)"; return 1; }
		_netns_enter_br tc qdisc replace dev "vh$i" root tbf rate "$down" burst "$b" latency 100ms || return 1
	fi
}

host_link() {
	_netns_host_ok "$1" || return 1
	case $2 in up | down) ;; *) _netns_log "host_link: up or down, not '$2'"; return 1 ;; esac
	_netns_enter_br ip link set "vh$1" "$2"
}

host_unshape() {
	local i=$1
	_netns_host_ok "$i" || return 1
	host_exec "$i" tc qdisc del dev eth0 root 2>/dev/null
	_netns_enter_br tc qdisc del dev "vh$i" root 2>/dev/null
	return 0
}

# /proc/net/dev is the reader's network namespace (sysfs would show the
# machine's): the 9th number after "eth0:" is the bytes sent. Printed as a
# string, never through awk's %d (mawk wraps at 2^31).
host_tx_bytes() {
	host_exec "$1" cat /proc/net/dev | awk '$1 == "eth0:" { print $10 }'
}
