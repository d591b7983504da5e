#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Process mode of the simulator (shoal-sim run) on faults-4.ini: a gateway
# and four devices, each a real shoald in namespaces of its own with its own
# dbus-daemon and avahi-daemon (mDNS), tbf-shaped links, file-backed A/B
# slots and the boot simulator. dev-1 loses power during its install and
# installs again, dev-2's link is cut while it fetches, dev-4's health check
# fails. Asserts the final states (dev-4 rolled back to 1.0, the others
# committed 2.0), every results.json field and its byte counts, the
# report.svg, and that nothing is left running; then that Ctrl-C in the
# middle of a run takes everything down.
#
# Needs root and tbf; otherwise prints a TAP skip.
#
# usage: sim-run.sh SHOAL-SIM SHOAL SHOALD GEN-IMAGE SCENARIO-DIR
set -u
SIM=$1
export SHOAL=$2 SHOALD=$3 SHOAL_GEN_IMAGE=$4
DIR=$5
HERE=$(dirname "$0")
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
netns_tap_skip_unless_usable tbf

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
