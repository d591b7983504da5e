#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Process mode of the simulator (shoal-sim run).
#
# Loopback mode (--loopback: no namespaces, no tc, no root needed): every
# node a real shoald on 127.0.0.1 with a port of its own, static discovery,
# the links' rates as shoald's own rate limits.
# - campaign-6.ini: a real campaign on the gateway; dev-1, the canary,
#   commits before any other device installs, dev-5 fails its health check
#   and rolls back, which pauses the campaign; results.json says so.
# - a campaign whose canary fails: the campaign pauses and the rest stay
#   on version 1 (failed, never commanded).
# - malicious-peer.ini: the bans come from each shoald's status.
# - small-4.ini as the user nobody (when run as root with runuser): no root
#   is needed.
# Namespace mode (root and tbf, else those checks are a TAP skip), on
# faults-4.ini: a gateway and four devices, each a real shoald in namespaces
# of its own with its own dbus-daemon and avahi-daemon (mDNS), tbf-shaped
# links, file-backed A/B slots and the boot simulator. dev-1 loses power
# during its install and installs again, dev-2's link is cut while it
# fetches, dev-4's health check fails. Asserts the final states (dev-4 rolled
# back to 1.0, the others committed 2.0), every results.json field and its
# byte counts, the report.svg, and that nothing is left running; then that
# Ctrl-C in the middle of a run takes everything down.
#
# usage: sim-run.sh SHOAL-SIM SHOAL SHOALD GEN-IMAGE SCENARIO-DIR
set -u
SIM=$1
export SHOAL=$2 SHOALD=$3 SHOAL_GEN_IMAGE=$4
DIR=$5
HERE=$(dirname "$0")
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/shoal-sim-run.XXXXXX")
SIMPID=
cleanup() {
	[ -z "$SIMPID" ] || { kill -KILL "$SIMPID" 2>/dev/null; wait "$SIMPID" 2>/dev/null; }
	if [ -n "${SHOAL_TEST_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# processes whose command line names a path under DIR (ours: nobody else's
# daemons are started with our temporary directory in their arguments)
ours_running() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$1" && echo "${p#/proc/}"
	done
	return 0
}

field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
show_fail() { # RC ERR OUT: the end of both when the run failed
	[ "$1" = 0 ] || sed 's/^/#   /' "$2" "$3" | tail -40
}
# loopback TAG SCENARIO CHECK: a --loopback run, results in $T/TAG, its
# nodes in $T/TAGw, its output in $T/TAG.out and .err; CHECK: it exits 0
loopback() {
	SHOAL_NO_PROGRESS=1 "$SIM" run --loopback "$2" --out "$T/$1" --keep "$T/$1w" --time-limit 90 \
		>"$T/$1.out" 2>"$T/$1.err"
	local rc=$?
	check "$3" test "$rc" = 0
	show_fail "$rc" "$T/$1.err" "$T/$1.out"
}

# ---- loopback mode ----

loopback lc "$DIR/campaign-6.ini" "loopback campaign-6: exits 0 (every device as expected)"
R=$T/lc/results.json
check "loopback: it said what it does not apply (latency)" grep -q "loopback mode: the scenario's latency and loss are NOT applied" "$T/lc.err"
check "loopback: every shoald listens on 127.0.0.1 with a port of its own, found statically" \
	sh -c "[ \$(cat '$T'/lcw/*/shoald.conf | grep -c '^listen_address = 127.0.0.1\$') = 7 ] &&
	       [ \$(grep -h '^listen_port' '$T'/lcw/*/shoald.conf | sort -u | wc -l) = 7 ] &&
	       grep -q '^mdns = no' '$T/lcw/dev-1/shoald.conf' && grep -q '^gateway = 127.0.0.1:' '$T/lcw/dev-1/shoald.conf'"
check "loopback: the links' rates are shoald's own (dev-1 50Mbit up, 100Mbit down; the gateway 40Mbit up)" \
	sh -c "grep -qx 'upload_rate = 6250000' '$T/lcw/dev-1/shoald.conf' && grep -qx 'download_rate = 12500000' '$T/lcw/dev-1/shoald.conf' &&
	       grep -qx 'upload_rate = 5000000' '$T/lcw/gateway/shoald.conf'"
check "campaign: the devices wait for the gateway (install = manual)" grep -qx "install = manual" "$T/lcw/dev-3/shoald.conf"
check "campaign: the gateway ran a real campaign" grep -q "the gateway runs campaign 1 for version 2.0" "$T/lc.err"
check "campaign: results.json says it paused at dev-5's failure" \
	test "$(field "$R" 'r["campaign"]["state"], r["campaign"]["failures"], "dev-5" in r["campaign"]["reason"]')" = "('paused', 1, True)"
check "campaign: dev-1 was the canary and is done, the others the rest" \
	test "$(field "$R" '[(n["name"], n["campaign_phase"]) for n in r["per_node"] if n["campaign_phase"] == "canary"]')" = "[('dev-1', 'canary')]"
check "campaign: dev-5 failed, every other target done" \
	test "$(field "$R" 'sorted((n["name"], n["campaign_target"]) for n in r["per_node"] if n["campaign_target"] != "done")')" = "[('dev-5', 'failed')]"
check "campaign: dev-5 rolled back to 1.0, the others committed 2.0" \
	test "$(field "$R" 'sorted((n["final_state"], n["release"]) for n in r["per_node"])')" = "[('committed', '2.0'), ('committed', '2.0'), ('committed', '2.0'), ('committed', '2.0'), ('committed', '2.0'), ('rolled_back', '1.0')]"
check "campaign: the canary committed before any other device did (they all fetched at once)" python3 -c '
import json, sys
n = {x["name"]: x for x in json.load(open(sys.argv[1]))["per_node"]}
sys.exit(not (0 < n["dev-1"]["committed_s"] < min(x["committed_s"] for k, x in n.items() if k != "dev-1")))' "$R"
check "campaign: the summary names the campaign's end" grep -q "campaign paused" "$T/lc.out"
check "loopback: report.svg has a line per device" test "$(grep -c '<polyline' "$T/lc/report.svg" 2>/dev/null)" -ge 6
check "loopback: nothing of the run is left running" test -z "$(ours_running "$T/lcw")"

# a canary that fails: the campaign pauses and never asks the rest
cat >"$T/canary-fails.ini" <<'INI'
[fleet]
devices = 4
[image]
size = 8M
changed = 30%
seed = 3
[links]
up = 100Mbit
down = 100Mbit
[rollout]
mode = campaign
canary = dev-2
[fault.bad]
kind = health-fail
on = dev-2
[expect]
rolled_back = dev-2
failed = rest
INI
loopback cf "$T/canary-fails.ini" "a failing canary: exits 0 (dev-2 rolled back, the rest failed)"
R=$T/cf/results.json
check "a failing canary: the campaign is paused, the rest still pending on 1.0" \
	test "$(field "$R" 'r["campaign"]["state"], sorted((n["name"], n["campaign_phase"], n["campaign_target"], n["release"]) for n in r["per_node"])')" = \
	"('paused', [('dev-1', 'rest', 'pending', '1.0'), ('dev-2', 'canary', 'failed', '1.0'), ('dev-3', 'rest', 'pending', '1.0'), ('dev-4', 'rest', 'pending', '1.0')])"
check "a failing canary: the others never installed" sh -c "! grep -q 'installer: installing' '$T'/cfw/dev-[134]/shoald.log"
check "a failing canary: it ended in seconds, not at the time limit" test "$(field "$R" 'int(r["end_s"] < 30)')" = 1
check "a failing canary: nothing of the run is left running" test -z "$(ours_running "$T/cfw")"

# a malicious peer: the bans come from each shoald's status
loopback lm "$DIR/malicious-peer.ini" "loopback malicious-peer: exits 0 (every device commits)"
check "malicious-peer: devices banned the liar (from shoald's status), dev-2 banned nobody" \
	test "$(field "$T/lm/results.json" 'sum(n["banned_peers"] for n in r["per_node"]) >= 1 and [n["banned_peers"] for n in r["per_node"] if n["name"] == "dev-2"] == [0]')" = True
check "malicious-peer: the count is what each status lists" python3 - "$T/lm/results.json" "$T/lmw" <<'PY'
import json, sys, re
r = json.load(open(sys.argv[1]))
for n in r["per_node"]:
    log = open("%s/%s/shoald.log" % (sys.argv[2], n["name"])).read()
    if n["banned_peers"] != len(set(re.findall(r"peer ([0-9a-f]{16}) \([^)]*\): banned for", log))):
        sys.exit("%s: %d bans in results, log differs" % (n["name"], n["banned_peers"]))
PY
check "malicious-peer: nothing of the run is left running" test -z "$(ours_running "$T/lmw")"

# no root needed: small-4 as nobody
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null && id nobody >/dev/null 2>&1 &&
	runuser -u nobody -- test -x "$SIM" -a -x "$SHOALD" -a -r "$DIR/small-4.ini"; then
	install -d -o nobody "$T/nobody"
	chmod 755 "$T"
	runuser -u nobody -- env SHOAL_NO_PROGRESS=1 SHOAL="$SHOAL" SHOALD="$SHOALD" SHOAL_GEN_IMAGE="$SHOAL_GEN_IMAGE" \
		"$SIM" run --loopback "$DIR/small-4.ini" --out "$T/nobody/out" --keep "$T/nobody/work" --time-limit 60 \
		>"$T/nb.out" 2>"$T/nb.err"
	rc=$?
	check "as nobody: shoal-sim run --loopback small-4 exits 0 (every device committed)" test "$rc" = 0
	show_fail "$rc" "$T/nb.err" "$T/nb.out"
	check "as nobody: every node's files are nobody's" test -z "$(find "$T/nobody/work" ! -user nobody | head -1)"
	check "as nobody: nothing of the run is left running" test -z "$(ours_running "$T/nobody")"
else
	skip "as nobody: shoal-sim run --loopback" "not root, no runuser, or the build is not readable by nobody"
fi
check "without --loopback a non-root run says how to run without root" sh -c \
	"[ \"\$(id -u)\" = 0 ] || ! '$SIM' run '$DIR/small-4.ini' --out '$T/x' 2>&1 | grep -q -- '--loopback'"
expect_exit 2 "--loopback with --discovery mdns is refused" "$SIM" run --loopback --discovery mdns "$DIR/small-4.ini"

# ---- namespace mode ----

why=$(netns_usable)
[ -n "$why" ] || netns_have_qdisc tbf || why="this kernel has no tbf qdisc"
if [ -n "$why" ]; then
	skip "namespace mode" "$why"
	done_testing
	exit
fi

SHOAL_NO_PROGRESS=1 "$SIM" run "$DIR/faults-4.ini" --out "$T/out" --keep "$T/work" --time-limit 90 \
	>"$T/run.out" 2>"$T/run.err"
rc=$?
check "shoal-sim run faults-4 exits 0 (every device as expected)" test "$rc" = 0
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/run.err" "$T/run.out" | tail -40
R=$T/out/results.json
check "results.json is there" test -s "$R"
check "results.json: mode process, 4 nodes, a 16 MiB image" \
	test "$(field "$R" 'r["mode"], r["nodes"], r["image_bytes"]')" = "('process', 4, 16777216)"
check "dev-4 rolled back and runs 1.0" \
	test "$(field "$R" '[(n["final_state"], n["release"]) for n in r["per_node"] if n["name"] == "dev-4"]')" = "[('rolled_back', '1.0')]"
check "dev-1, dev-2, dev-3 committed and run 2.0" \
	test "$(field "$R" 'sorted(n["name"] for n in r["per_node"] if n["final_state"] == "committed" and n["release"] == "2.0")')" = "['dev-1', 'dev-2', 'dev-3']"
check "every top-level field is there and has a value" \
	test "$(field "$R" 'all(r.get(k) is not None for k in ["nodes", "image_bytes", "seed_bytes_sent", "peer_bytes_sent", "local_bytes_reused", "time_all_complete_s", "time_all_committed_s", "kumar_ross_bound_s"])')" = True
check "every per-node field is there" \
	test "$(field "$R" 'all(k in n for n in r["per_node"] for k in ["name", "final_state", "release", "bytes_from_seed", "bytes_from_peers", "bytes_reused", "banned_peers"])')" = True
check "times: 0 < bound, 0 < all complete <= all committed" \
	test "$(field "$R" '0 < r["kumar_ross_bound_s"] and 0 < r["time_all_complete_s"] <= r["time_all_committed_s"]')" = True
check "the gateway sent something, the devices sent more than it" \
	test "$(field "$R" '0 < r["seed_bytes_sent"] < r["peer_bytes_sent"]')" = True
check "each device reused part of version 1 and fetched the rest" \
	test "$(field "$R" 'all(n["bytes_reused"] > 0 and n["bytes_from_seed"] + n["bytes_from_peers"] >= r["image_bytes"] - n["bytes_reused"] for n in r["per_node"])')" = True
check "nobody banned anybody (no malicious peer here)" \
	test "$(field "$R" 'sum(n["banned_peers"] for n in r["per_node"])')" = 0
check "report.svg is an SVG with a line per device" \
	test "$(grep -c '<polyline' "$T/out/report.svg" 2>/dev/null)" -ge 4
check "the run said the power cut, the link cut and the rollback" \
	sh -c "grep -q 'dev-1: power cut' '$T/run.err' && grep -q 'dev-2: link cut' '$T/run.err' && grep -q 'dev-4: rolled_back' '$T/run.err'"
check "the summary names every device" sh -c "grep -c '^dev-[1-4] ' '$T/run.out' | grep -qx 4"
check "nothing of the run is left running" test -z "$(ours_running "$T/work")"

# Ctrl-C in the middle: everything ends, exit 130, no results
rm -rf "$T/work"
SHOAL_NO_PROGRESS=1 "$SIM" run "$DIR/faults-4.ini" --out "$T/out2" --keep "$T/work" --discovery static \
	>"$T/int.out" 2>"$T/int.err" &
SIMPID=$!
n=600
while [ $((n -= 1)) -gt 0 ] && ! grep -q "the gateway publishes" "$T/int.err"; do sleep 0.1; done
check "a second run got its fleet up (static discovery)" grep -q "the gateway publishes" "$T/int.err"
kill -INT "$SIMPID"
wait "$SIMPID"
rc=$?
SIMPID=
check "SIGINT: shoal-sim exits 130" test "$rc" = 130
check "SIGINT: it says it takes everything down" grep -q "interrupted" "$T/int.err"
check "SIGINT: no results.json" test ! -e "$T/out2/results.json"
check "SIGINT: nothing of the run is left running" test -z "$(ours_running "$T/work")"
done_testing
