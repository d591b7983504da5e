#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The swarm benchmark: a seed host and N device hosts, each in its own
# network namespace on a bridge (tests/lib/netns.sh), tbf on both ends of
# every host's veth, and the same image moved to every device by
#   - shoal:      the gateway seeds the release, N shoald devices fetch it;
#   - BitTorrent: opentracker + aria2c on every host (no DHT, LPD or PEX,
#                 bound to the namespace addresses, 256 KiB pieces);
#   - HTTP:       nginx on the seed host, curl on every device at once.
# For each it prints the time until every device holds the image, its ratio
# to the Kumar-Ross bound F * max(1/u_s, 1/d_min, N / (u_s + sum u_i)), and
# the bytes the seed sent (its own counter, and its eth0's tx bytes, which
# include Ethernet/IP/TCP headers: about 1.046 x the payload, so no tool
# can get below about 1.046 x the bound on this rig).
#
# Needs root and `./scripts/setup-deps --bench` (aria2, opentracker, nginx,
# curl). Everything runs inside namespaces it makes; it ends every process
# it started by pid and leaves no namespace behind (trap EXIT).
#
# usage: bench/swarm-bench.sh BUILD-DIR [options]
#   --n LIST         device counts, comma separated (default 8,16)
#   --size-mib M     image size (default 128; gen-image --seed 61, random)
#   --up RATE        every host's upload, tc units (default 80mbit)
#   --down RATE      every host's download (default 400mbit)
#   --seed-up RATE   the seed's upload (default: --up)
#   --tools LIST     shoal,bt,http (default all three)
#   --mdns           shoal devices find each other and the gateway with avahi
#                    (one dbus-daemon + avahi-daemon per host) instead of
#                    static addresses
#   --dir DIR        where the images and logs go (default /tmp)
#   --keep           keep the work directory (logs) afterwards
#   --curve          print every device's completion time
# SHOAL_EXTRA (environment): lines added to every shoal device's
# configuration, for experiments (e.g. $'[transfer]\nupload_slots = 16').
# Prints a Markdown table on stdout, progress and a profile on stderr.
# Runs at nice -20 (NICE=...) so that other work on the machine disturbs
# all three tools less; the shared 2 cores still move the figures.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
B=$(cd "${1:?usage: $0 BUILD-DIR [options]}" && pwd) || exit 2
shift
SHOAL=$B/cli/shoal SHOALD=$B/daemon/shoald GEN=$B/tests/gen-image
NS_LIST=8,16 MIB=128 UP=80mbit DOWN=400mbit SEED_UP= TOOLS=shoal,bt,http MDNS= DIR=/tmp CURVE=
while [ $# -gt 0 ]; do
	case $1 in
	--n) NS_LIST=$2; shift ;;
	--size-mib) MIB=$2; shift ;;
	--up) UP=$2; shift ;;
	--down) DOWN=$2; shift ;;
	--seed-up) SEED_UP=$2; shift ;;
	--tools) TOOLS=$2; shift ;;
	--mdns) MDNS=1 ;;
	--dir) DIR=$2; shift ;;
	--keep) export SHOAL_TEST_KEEP=1 ;;
	--curve) CURVE=1 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
SEED_UP=${SEED_UP:-$UP}

. "$HERE/../tests/lib/tap.sh"
. "$HERE/../tests/lib/netns.sh"
. "$HERE/../tests/lib/fleet.sh"
if ! why=$(netns_usable); then
	echo "swarm-bench: $why" >&2
	exit 77
fi
for t in aria2c opentracker nginx curl python3; do
	command -v "$t" >/dev/null || { echo "swarm-bench: $t is missing: ./scripts/setup-deps --bench" >&2; exit 77; }
done
netns_have_qdisc tbf || { echo "swarm-bench: this kernel has no tbf qdisc" >&2; exit 77; }
[ -x "$SHOALD" ] && [ -x "$GEN" ] || { echo "swarm-bench: build $B first (with -Dtests=enabled)" >&2; exit 2; }

log() { echo "# $*" >&2; }
now() { date +%s.%N; }
bits_of() { # tc rate -> bits/s
	awk -v r="$1" 'BEGIN {
		n = r + 0; u = r; sub(/^[0-9.]+/, "", u)
		m = u == "bit" ? 1 : u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : u == "gbit" ? 1e9 : -1
		if (m < 0) exit 1
		printf "%.0f", n * m }'
}
for r in "$UP" "$DOWN" "$SEED_UP"; do
	bits_of "$r" >/dev/null || { echo "swarm-bench: bad rate $r (bit, kbit, mbit, gbit)" >&2; exit 2; }
done

renice -n "${NICE:--20}" -p $$ >/dev/null
export TMPDIR=$DIR
fleet_setup >/dev/null
TOP=$T
bench_cleanup() {
	lan_down
	T=$TOP
	fleet_cleanup >&2
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

SIZE=$((MIB << 20))
log "image: $MIB MiB, gen-image --seed 61 --kind random"
"$GEN" --seed 61 --size "$SIZE" --kind random -o "$TOP/img" || exit 1
"$SHOAL" release create --image "$TOP/img" --product demo --version 2 --counter 2 --key "$TOP/rel.key" \
	--keyring "$TOP/kr" -o "$TOP/rel" >/dev/null || exit 1

# the torrent: one file "img", 256 KiB pieces, the seed host's tracker
make_torrent() { # IMAGE ANNOUNCE OUT: prints the info-hash (hex)
	python3 - "$@" <<'PY'
import hashlib, sys
img, announce, out = sys.argv[1:4]
def be(x):
    if isinstance(x, int): return b"i%de" % x
    if isinstance(x, str): x = x.encode()
    if isinstance(x, bytes): return b"%d:%s" % (len(x), x)
    if isinstance(x, dict):
        return b"d" + b"".join(be(k) + be(x[k]) for k in sorted(x)) + b"e"
    raise TypeError(x)
PL = 256 * 1024
pieces, n = [], 0
with open(img, "rb") as f:
    while True:
        b = f.read(PL)
        if not b: break
        n += len(b)
        pieces.append(hashlib.sha1(b).digest())
info = {"name": "img", "piece length": PL, "length": n, "pieces": b"".join(pieces)}
with open(out, "wb") as f:
    f.write(be({"announce": announce, "info": info}))
print(hashlib.sha1(be(info)).hexdigest())
PY
}

# ---- helpers on the rig ----------------------------------------------------

SEED=1 # host 1 is the gateway / seed; hosts 2..N+1 are the devices
PHASE_PIDS=()
phase_spawn() { # HOST LOG CMD...
	host_spawn "$@" || return 1
	PHASE_PIDS+=("$NETNS_PID")
}
phase_end() {
	local k
	for ((k = ${#PHASE_PIDS[@]} - 1; k >= 0; k--)); do _netns_end "${PHASE_PIDS[$k]}"; done
	PHASE_PIDS=()
}
# wait_files TIMEOUT FILE...: until every file exists; bounded
wait_files() {
	local until=$((SECONDS + $1)) f missing; shift
	while :; do
		missing=0
		for f in "$@"; do [ -e "$f" ] || missing=1; done
		[ "$missing" = 0 ] && return 0
		[ "$SECONDS" -lt "$until" ] || return 1
		sleep 0.1
	done
}

# The seed's eth0 tx bytes every 0.25 s while a tool runs, for the profile
# of how busy its link was: seed_sample_start / seed_sample_stop.
SAMPLER=
seed_sample_start() {
	host_spawn $SEED "$T/seed-tx.txt" sh -c \
		'while :; do printf "%s " "$(date +%s.%N)"; awk "\$1 == \"eth0:\" { print \$10 }" /proc/net/dev; sleep 0.25; done'
	SAMPLER=$NETNS_PID
}
seed_sample_stop() { # TOOL T0: says how busy the seed's link was
	_netns_end "$SAMPLER"
	awk -v tool="$1" -v t0="$2" -v rate="$(bits_of "$SEED_UP")" '
		NR == 1 { b0 = $2 } { t[NR] = $1 - t0; b[NR] = $2 - b0 }
		END { for (i = 1; i <= NR; i++) if (b[i] >= 0.99 * b[NR]) break
			printf "# %s: the seed sent 99%% of its bytes by %.1f s, at %.0f%% of its link rate\n",
				tool, t[i], (t[i] > 0 ? 100 * b[i] * 8 / rate / t[i] : 0) }' "$T/seed-tx.txt" >&2
}

cpu_s() { # PID...: their user + system CPU seconds (mean over them)
	local p
	for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
		awk '{ sub(/^.*\) /, ""); c += $12 + $13; n++ } END { if (n) printf "%.2f", c / 100 / n }'
}

# result TOOL N T0 SEED_OWN_BYTES SEED_TX_BYTES DONE_TIMES...: one row
ROWS=()
result() {
	local tool=$1 n=$2 t0=$3 own=$4 tx=$5 row
	shift 5
	row=$(printf '%s\n' "$@" | sort -g | awk -v tool="$tool" -v n="$n" -v t0="$t0" -v own="$own" -v tx="$tx" \
		-v f="$SIZE" -v kr="$KR" -v curve="$CURVE" -v back="${READ_BACK:--}" '
		{ t[NR] = $1 - t0 } END {
			last = t[NR]
			s = sprintf("| %s | %d | %.1f s | %.2f | %.1f s | %.1f s | %s | %s | %.3f |", tool, n, last, last / kr,
				t[1], t[int((NR + 1) / 2)], back, own == "" ? "-" : sprintf("%.3f", own / f), tx / f)
			if (curve != "") { s = s " <!--"; for (i = 1; i <= NR; i++) s = s sprintf(" %.1f", t[i]); s = s " -->" }
			print s }')
	ROWS+=("$row")
	log "$row"
	READ_BACK=
}

# ---- shoal -----------------------------------------------------------------

run_shoal() { # N
	local n=$1 i j port=7700 t0 tx0 tx1 sent done=() lines f b back
	log "shoal, N=$n: gateway and devices start"
	export FLEET_LISTEN FLEET_LOG=info FLEET_MDNS=no
	[ -n "$MDNS" ] && FLEET_MDNS=yes
	FLEET_LISTEN=$(host_ip $SEED)
	conf gw gateway $port fleet.key '[gateway]' "store_dir = $T/store" "import = $TOP/rel"
	for ((i = 1; i <= n; i++)); do
		lines=()
		if [ -z "$MDNS" ]; then
			lines+=("gateway = $(host_ip $SEED):$port")
			for ((j = 1; j <= n; j++)); do
				[ "$j" = "$i" ] || lines+=("static_peer = $(host_ip $((j + 1))):$port")
			done
		fi
		FLEET_LISTEN=$(host_ip $((i + 1)))
		conf "dev$i" device $port fleet.key "${lines[@]}" ${SHOAL_EXTRA:+"$SHOAL_EXTRA"} '[device]' "target = $T/dev$i.img"
	done
	start_in $SEED gw || { log "the gateway did not start"; tail -5 gw.log >&2; return 1; }
	PHASE_PIDS+=("${PID_OF[gw]}")
	seed_sample_start
	tx0=$(host_tx_bytes $SEED)
	t0=$(now)
	for ((i = 1; i <= n; i++)); do
		phase_spawn $((i + 1)) "$T/dev$i.log" "$SHOALD" -c "$T/dev$i.conf" || return 1
	done
	wait_for $((10 * ${KR%.*} + 60)) all_logs_have "$n" "complete and verified" ||
		log "shoal: not every device completed"
	tx1=$(host_tx_bytes $SEED)
	sent=$(status gw | tr -d ' \n' | sed -n 's/.*"sent":\([0-9]*\).*/\1/p')
	# a device holds the image once every chunk is verified on arrival
	# and written: aria2c's completion, and what shoald calls complete
	# when it fetches into a slot. Into a plain target, shoald then also
	# reads the whole image back against its hash: the "read back" column.
	back=
	for ((i = 1; i <= n; i++)); do
		f=$(grep -h "every chunk verified and written" "dev$i.log" | head -1 | sed -n 's/^<[0-9]*>\([0-9.]*\) .*/\1/p')
		b=$(grep -h "complete and verified" "dev$i.log" | head -1 | sed -n 's/^<[0-9]*>\([0-9.]*\) .*/\1/p')
		if [ -z "$f" ] || [ -z "$b" ] || ! cmp -s "dev$i.img" "$TOP/img"; then
			log "shoal: dev$i does not hold a verified, byte-identical image"
			f=inf b=inf
		fi
		done+=("$f")
		back=$(printf '%s\n' "$b" $back | sort -g | tail -1)
	done
	READ_BACK=$(awk -v a="$back" -v b="$t0" 'BEGIN { printf "%.1f s", a - b }')
	seed_sample_stop shoal "$t0"
	log "shoal: CPU seconds: gateway $(cpu_s "${PID_OF[gw]}"), each device $(cpu_s "${PHASE_PIDS[@]:1}") (mean)"
	phase_end
	result shoal "$n" "$t0" "$sent" "$((tx1 - tx0))" "${done[@]}"
	grep -h "complete and verified" dev*.log | sed 's/.*: release/# release/' | sort | head -3 >&2
	rm -f dev*.img
}
all_logs_have() { # N TEXT
	local i
	for ((i = 1; i <= $1; i++)); do grep -q "$2" "$T/dev$i.log" 2>/dev/null || return 1; done
}

# ---- BitTorrent --------------------------------------------------------------

ARIA=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
	--disable-ipv6=true --listen-port=6881 --seed-ratio=0.0 --file-allocation=none --summary-interval=0
	--console-log-level=warn --auto-save-interval=0 --allow-overwrite=true --bt-save-metadata=false
	--enable-rpc=true --rpc-listen-all=false --rpc-listen-port=6800 --max-overall-upload-limit=0)

rpc_seed() { # FIELD: of the seed's aria2c (RPC inside its namespace)
	host_exec $SEED curl -s --max-time 5 http://127.0.0.1:6800/jsonrpc -d \
		'{"jsonrpc":"2.0","id":"b","method":"aria2.tellActive","params":[["'"$1"'"]]}' |
		sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p'
}

run_bt() { # N
	local n=$1 i ip t0 tx0 tx1 up done=() hash
	ip=$(host_ip $SEED)
	log "BitTorrent, N=$n: tracker and seed start"
	mkdir -p tracker seed
	chmod 755 tracker
	hash=$(make_torrent "$TOP/img" "http://$ip:6969/announce" img.torrent) || return 1
	# Debian's opentracker is a whitelist tracker: without the hash every
	# announce is refused. The path is inside its chroot (-d).
	echo "$hash" >tracker/whitelist
	chmod 644 tracker/whitelist
	phase_spawn $SEED "$T/tracker.log" opentracker -i "$ip" -p 6969 -P 6969 -d "$T/tracker" -w /whitelist || return 1
	ln "$TOP/img" seed/img
	cat >bt-done.sh <<'EOF'
#!/bin/sh
date +%s.%N >"$(dirname "$3")/done"
EOF
	chmod +x bt-done.sh
	phase_spawn $SEED "$T/seed.log" aria2c "${ARIA[@]}" --interface="$ip" --check-integrity=true \
		--dir="$T/seed" "$T/img.torrent" || return 1
	if ! wait_for 60 bt_seeding; then log "aria2c seed did not start"; tail -5 seed.log >&2; return 1; fi
	seed_sample_start
	tx0=$(host_tx_bytes $SEED)
	t0=$(now)
	for ((i = 1; i <= n; i++)); do
		mkdir -p "bt$i"
		phase_spawn $((i + 1)) "$T/bt$i.log" aria2c "${ARIA[@]}" --interface="$(host_ip $((i + 1)))" \
			--on-bt-download-complete="$T/bt-done.sh" --dir="$T/bt$i" "$T/img.torrent" || return 1
	done
	wait_files $((10 * ${KR%.*} + 60)) $(for ((i = 1; i <= n; i++)); do echo "bt$i/done"; done) ||
		log "BitTorrent: not every device completed"
	tx1=$(host_tx_bytes $SEED)
	up=$(rpc_seed uploadLength)
	for ((i = 1; i <= n; i++)); do
		if [ -e "bt$i/done" ] && cmp -s "bt$i/img" "$TOP/img"; then
			done+=("$(cat "bt$i/done")")
		else
			log "BitTorrent: bt$i does not hold the image"
			done+=(inf)
		fi
	done
	seed_sample_stop aria2c "$t0"
	log "aria2c: CPU seconds: seed $(cpu_s "${PHASE_PIDS[1]}"), each device $(cpu_s "${PHASE_PIDS[@]:2}") (mean)"
	phase_end
	result aria2c "$n" "$t0" "$up" "$((tx1 - tx0))" "${done[@]}"
	rm -rf bt[0-9]* seed
}
bt_seeding() { [ "$(rpc_seed seeder)" = true ]; }

# ---- HTTP --------------------------------------------------------------------

run_http() { # N
	local n=$1 i ip t0 tx0 tx1 done=() pids=() t
	ip=$(host_ip $SEED)
	log "HTTP, N=$n: nginx starts"
	mkdir -p nginx/www nginx/tmp
	ln "$TOP/img" nginx/www/img
	cat >nginx/nginx.conf <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $T/nginx/tmp;
	proxy_temp_path $T/nginx/tmp;
	fastcgi_temp_path $T/nginx/tmp;
	uwsgi_temp_path $T/nginx/tmp;
	scgi_temp_path $T/nginx/tmp;
	server {
		listen $ip:8080;
		root $T/nginx/www;
	}
}
EOF
	phase_spawn $SEED "$T/nginx.log" nginx -p "$T/nginx" -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" || return 1
	if ! wait_for 20 host_exec 2 curl -sfI "http://$ip:8080/img"; then log "nginx did not start"; cat nginx.log nginx/error.log >&2; return 1; fi
	seed_sample_start
	tx0=$(host_tx_bytes $SEED)
	t0=$(now)
	for ((i = 1; i <= n; i++)); do
		host_spawn $((i + 1)) "$T/curl$i.log" sh -c 'curl -sf --max-time "$1" -o "$2" "$3" && date +%s.%N' \
			_ $((n * 3 * ${KR%.*} + 120)) "$T/curl$i.img" "http://$ip:8080/img" || return 1
		pids+=("$NETNS_PID")
	done
	for ((i = 1; i <= n; i++)); do
		wait "${pids[$((i - 1))]}"
		t=$(tail -1 "curl$i.log")
		if [[ "$t" =~ ^[0-9.]+$ ]] && cmp -s "curl$i.img" "$TOP/img"; then done+=("$t"); else
			log "HTTP: curl$i failed"
			done+=(inf)
		fi
	done
	tx1=$(host_tx_bytes $SEED)
	seed_sample_stop http "$t0"
	phase_end
	result "nginx + curl" "$n" "$t0" "" "$((tx1 - tx0))" "${done[@]}"
	rm -rf curl*.img nginx
}

# ---- the runs ------------------------------------------------------------------

echo "| tool | N | all hold the image | / bound | first device | median device | all read back | seed sent / image (own counter) | seed eth0 tx / image |"
echo "|---|---|---|---|---|---|---|---|---|"
IFS=, read -r -a NS <<<"$NS_LIST"
for n in "${NS[@]}"; do
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "bad N $n" >&2; exit 2; }
	KR=$(awk -v f="$SIZE" -v n="$n" -v us="$(bits_of "$SEED_UP")" -v u="$(bits_of "$UP")" -v d="$(bits_of "$DOWN")" 'BEGIN {
		F = f * 8; a = 1 / us; b = 1 / d; c = n / (us + n * u)
		m = a > b ? a : b; m = m > c ? m : c
		printf "%.3f", F * m }')
	log "N=$n: Kumar-Ross bound $KR s (headers alone: x 1.046 = $(awk -v k="$KR" 'BEGIN { printf "%.1f", k * 1.046 }') s)"
	T=$TOP/n$n
	mkdir -p "$T" && cd "$T" || exit 1
	cp "$TOP"/{fleet.key,root.pub} .
	NETNS_DAEMONS=$([ -n "$MDNS" ] && echo 1 || echo 0) lan_up bench $((n + 1)) 78 || { log "no LAN"; exit 1; }
	host_shape $SEED "$SEED_UP" "$DOWN" || exit 1
	for ((i = 2; i <= n + 1; i++)); do host_shape "$i" "$UP" "$DOWN" || exit 1; done
	for tool in ${TOOLS//,/ }; do
		case $tool in
		shoal) run_shoal "$n" ;;
		bt) run_bt "$n" ;;
		http) run_http "$n" ;;
		*) log "unknown tool $tool" ;;
		esac
		phase_end
	done
	lan_down
	for r in "${ROWS[@]}"; do echo "$r"; done
	ROWS=()
	echo "| Kumar-Ross bound | $n | $KR s | 1.00 | | | | | |"
done
